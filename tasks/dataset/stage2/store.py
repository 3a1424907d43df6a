"""Stage 2, stored verdicts: each candidate's verdict in the catalog's `stage2` table and, for
an accepted clip, the arrays its samples need beside the clip's analysis, so a rerun analyses
only new candidates and a shard build or `benchmark build` reads the ties back."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from tasks.catalog import Catalog
from tasks.dataset.clip_library import LibraryClip
from tasks.dataset.stage2.ties import MultiPersonResult
from tasks.workdir import stage2_path


def arrays_path(work: Path, clip: LibraryClip) -> Path:
    return stage2_path(work, clip.source_id, clip.clip_id)


def stored_results(work: Path, candidates: list[LibraryClip]) -> tuple[dict[str, MultiPersonResult], list[LibraryClip]]:
    """(the accepted results recorded by an earlier run, the candidates still to analyse)."""
    with Catalog(work) as catalog:
        done = catalog.stage2_rows()
    results, todo = {}, []
    for clip in candidates:
        arrays = arrays_path(work, clip)
        row = done.get(clip.clip_id)
        if row is not None and (row["verdict"] == "rejected" or arrays.is_file()):
            if row["verdict"] == "accepted":
                results[clip.clip_id] = load_result(str(arrays), clip.clip_id, json.loads(row["metrics"]))
        else:
            todo.append(clip)
    return results, todo


def record_result(catalog: Catalog, work: Path, clip: LibraryClip, result: MultiPersonResult) -> None:
    """The verdict into the catalog; an accepted clip's arrays first, so a recorded acceptance
    always has them."""
    if result.rejected is None:
        save_result(str(arrays_path(work, clip)), result)
    catalog.record_stage2(clip.clip_id, result.metrics, result.rejected, result.detail)


def save_result(path: str, result: MultiPersonResult) -> None:
    """The arrays a stage-2 sample needs, written atomically beside the clip's analysis."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.part")
    labels = result.frame_voice if result.frame_voice is not None else np.zeros(0, np.int64)
    voices = np.array([-1 if v is None else v for v in result.voice_of_face], np.int64)
    with open(temp, "wb") as fh:
        np.savez_compressed(fh, boxes=result.boxes, frame_voice=labels, voice_of_face=voices)
    os.replace(temp, target)


def load_result(path: str, clip_id: str, metrics: dict) -> MultiPersonResult:
    arrays = np.load(path)
    tied = [None if v < 0 else int(v) for v in arrays["voice_of_face"]]
    return MultiPersonResult(clip_id, None, "", arrays["boxes"], tied, arrays["frame_voice"],
                             metrics.get("tie_scores", metrics.get("tie_correlations", [])), metrics)  # fmt: skip
