"""A team's own interactivity benchmark from its curated real multi-person clips.

Every clip that stage 2 accepted (each voice tied to a face, tasks/dataset/stage2/) becomes an
item in AnyTalker's layout (tasks/evaluation/benchmark.py): its first frame as the reference, one audio
track per face (that face's voice, zero elsewhere), each face's speaking intervals, and the clip
itself as the real recording. No released project offers this for a team's own footage.
"""

from __future__ import annotations

import json
from pathlib import Path

from tasks.catalog import Catalog
from tasks.curation.clipmedia import first_frame, read_audio
from tasks.dataset.clip_library import load_library
from tasks.dataset.stage2.render import voice_tracks
from tasks.dataset.stage2.store import arrays_path, load_result
from tasks.evaluation.benchmark import BenchmarkItem, mask_intervals, write_benchmark


def build_benchmark(workdir: str | Path, out: str | Path) -> tuple[list[BenchmarkItem], list[str]]:
    """(the items written, what was left out and why); a rerun rewrites the same items."""
    workdir, out = Path(workdir), Path(out)
    with Catalog(workdir) as catalog:
        rows = catalog.stage2_rows()
    clips = {c.clip_id: c for c in load_library(workdir, ("rejected", "accepted"))}
    items, skipped = [], []
    for clip_id, row in sorted(rows.items()):
        if row["verdict"] != "accepted":
            continue
        clip = clips.get(clip_id)
        arrays = arrays_path(workdir, clip) if clip else None
        if clip is None or not arrays.is_file():
            skipped.append(f"{clip_id}: its clip or stage-2 arrays are gone")
            continue
        result = load_result(str(arrays), clip_id, json.loads(row["metrics"]))
        if None in result.voice_of_face:
            skipped.append(f"{clip_id}: a face has no voice tied to it")
            continue
        tracks = voice_tracks(read_audio(clip.path), result.frame_voice, result.voice_of_face, clip.fps)
        speaking = [mask_intervals(result.frame_voice == voice, 1 / clip.fps) for voice in result.voice_of_face]
        first = first_frame(clip.path)
        items.append(write_benchmark(out, f"{clip_id}", tracks, speaking, first, video=Path(clip.path)))
    return items, skipped
