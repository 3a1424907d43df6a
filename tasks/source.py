"""The per-source chain of the curate flow's first half: probe, detect shots, plan, cut.

One plain function, so a source can be curated from a notebook or a test without Prefect;
the flow wraps it in a task. Every rejection comes back as `Rejected` with a reason.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from tasks.config import CurateConfig
from tasks.probe import probe
from tasks.records import Acquired, Rejected, SourceResult
from tasks.split import detect_cut_frames, plan_clips, shots_from_cuts
from tasks.standardize import standardize


def split_source(acquired: Acquired, workdir: Path, config: CurateConfig) -> SourceResult:
    """Probe `acquired`, split it into shots and write its standard clips under `workdir`.

    A section's clips are planned on the original video's clock (the section's start added),
    so their ids and times say where in the original they are.
    """
    facts, times = probe(acquired.path, config.ingest)
    try:
        cuts = detect_cut_frames(acquired.path, config.split, facts.n_frames)
    except Rejected as exc:
        raise Rejected(exc.reason, exc.detail, facts.as_dict()) from exc
    shots = shots_from_cuts(cuts, times)
    offset = 0.0
    if acquired.section is not None:  # a stream-copied section may run a little past its end: cut there
        offset = acquired.section.start_s
        length = acquired.section.end_s - offset
        shots = [replace(s, end_s=min(s.end_s, length)) for s in shots if s.start_s < length]
    plans = plan_clips(acquired.source_id, shots, config.split, config.standardize.fps, offset)
    clips = standardize(acquired.path, acquired.source_id, facts, plans, workdir, config.standardize)
    return SourceResult(acquired=acquired, probe=facts, shots=shots, clips=clips)
