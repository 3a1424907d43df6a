"""The per-source chain of the curate flow's first half: probe, detect shots, plan, cut.

One plain function, so a source can be curated from a notebook or a test without Prefect;
the flow wraps it in a task. Every rejection comes back as `Rejected` with a reason.
"""

from __future__ import annotations

from pathlib import Path

from tasks.config import CurateConfig
from tasks.probe import probe
from tasks.records import Acquired, Rejected, SourceResult
from tasks.split import detect_cut_frames, plan_clips, shots_from_cuts
from tasks.standardize import standardize


def split_source(acquired: Acquired, workdir: Path, config: CurateConfig) -> SourceResult:
    """Probe `acquired`, split it into shots and write its standard clips under `workdir`."""
    facts, times = probe(acquired.path, config.ingest)
    try:
        cuts = detect_cut_frames(acquired.path, config.split, facts.n_frames)
    except Rejected as exc:
        raise Rejected(exc.reason, exc.detail, facts.as_dict()) from exc
    shots = shots_from_cuts(cuts, times)
    plans = plan_clips(acquired.source_id, shots, config.split, config.standardize.fps)
    clips = standardize(acquired.path, acquired.source_id, facts, plans, workdir, config.standardize)
    return SourceResult(acquired=acquired, probe=facts, shots=shots, clips=clips)
