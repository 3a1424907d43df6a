"""The per-source chain of the curate flow: probe, detect shots, plan, analyse, cut what is kept.

One plain function, so a source can be curated from a notebook or a test without Prefect;
the flow runs it as one task per source (its shots and clips inside, the models loaded once per
worker). Analysis reads each clip's frames straight from the source (`decode_plans`), and only
the clips it keeps are encoded as standard clips: accepted ones, stage-2 candidates, and every
clip with `standardize.write_rejected`. A rejected clip keeps its time range, metrics and
verdict in the catalog, so `anytalker recut` can cut it later under changed thresholds.
Every rejection of the whole source comes back as `Rejected` with a reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from pathlib import Path

from tasks.config import CurateConfig
from tasks.curation.analysis.analyze import analyze_media
from tasks.curation.clipmedia import ClipMedia
from tasks.curation.probe import probe
from tasks.curation.split import detect_cut_frames, plan_clips, shots_from_cuts
from tasks.curation.standardize import decode_plans, standard_size, standardize
from tasks.curation.verdict import is_written
from tasks.records import Acquired, ClipPlan, ClipResult, Probe, Reason, Rejected, SourceResult

log = logging.getLogger(__name__)


def curate_source(acquired: Acquired, workdir: Path, config: CurateConfig) -> SourceResult:
    """Probe `acquired`, split it into shots, analyse every clip and write the kept ones under
    `workdir` (every clip when `config.analyze` is off: there is no verdict to keep them by).

    A section's clips are planned on the original video's clock (the section's start added),
    so their ids and times say where in the original they are.
    """
    started = time.perf_counter()
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
    seconds = {"detect": time.perf_counter() - started}
    if config.analyze:
        clips = analyze_and_cut(acquired.path, acquired.source_id, facts, plans, workdir, config, seconds)
    else:
        started = time.perf_counter()
        clips = standardize(acquired.path, acquired.source_id, facts, plans, workdir, config.standardize)
        seconds["encode"] = time.perf_counter() - started
    return SourceResult(acquired=acquired, probe=facts, shots=shots, clips=clips, seconds=seconds)


def analyze_and_cut(
    source: str | Path,
    source_id: str,
    facts: Probe,
    plans: list[ClipPlan],
    workdir: Path,
    config: CurateConfig,
    seconds: dict[str, float],
) -> list[ClipResult]:
    """Analyse every planned clip from the source's frames, then encode the kept ones.

    Clips are decoded in groups of `standardize.clips_per_pass` (one pass over each group's
    span). A clip whose frames cannot be decoded is rejected as decode_error, one whose
    analysis raises as internal_error; the rest of the source goes on. `seconds` gathers the
    wall time per stage (decode, faces, ..., encode)."""
    results: dict[str, ClipResult] = {}
    kept: list[ClipPlan] = []
    width, height = standard_size(facts, config.standardize)
    todo = [p for p in plans if p.rejected is None]
    for plan in plans:
        if plan.rejected is not None:
            results[plan.clip_id] = ClipResult(plan, None, rejected=plan.rejected, detail=f"{plan.length_s:.2f} s")
    size = config.standardize.clips_per_pass
    for k in range(0, len(todo), size):
        for plan, media in _decoded(source, facts, todo[k : k + size], config, seconds):
            if isinstance(media, str):
                results[plan.clip_id] = _unanalysed(plan, Reason.DECODE_ERROR, media, width, height, config)
                continue
            try:
                analysis = analyze_media(media, source_id, plan.clip_id, workdir, config)
            except Exception as exc:  # noqa: BLE001 - recorded as that clip's internal_error
                log.error("analysis failed on clip %s: %r", plan.clip_id, exc)
                results[plan.clip_id] = _unanalysed(plan, Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}",
                                                    width, height, config)  # fmt: skip
                continue
            for stage, spent in analysis.seconds.items():
                seconds[stage] = seconds.get(stage, 0.0) + spent
            metrics = {**_facts(plan, width, height, config), **analysis.metrics}
            results[plan.clip_id] = ClipResult(plan, None, int(metrics["n_frames"]), analysis.rejected, "", metrics)
            if is_written(analysis.rejected, config.standardize.write_rejected):  # cut with its sync offset applied
                kept.append(replace(plan, audio_shift_frames=int(analysis.metrics.get("sync_shifted_frames", 0))))
    started = time.perf_counter()
    for written in standardize(source, source_id, facts, kept, workdir, config.standardize):
        analysed = results[written.plan.clip_id]
        if written.path is None:  # the encode failed: the clip is lost to that, whatever analysis said
            results[written.plan.clip_id] = replace(analysed, rejected=written.rejected, detail=written.detail)
            continue
        metrics = {**analysed.metrics, **written.metrics}
        results[written.plan.clip_id] = replace(analysed, path=written.path, metrics=metrics)
    seconds["encode"] = seconds.get("encode", 0.0) + time.perf_counter() - started
    return [results[p.clip_id] for p in plans]


def _decoded(
    source: str | Path, facts: Probe, group: list[ClipPlan], config: CurateConfig, seconds: dict[str, float]
) -> Iterator[tuple[ClipPlan, ClipMedia | str]]:
    """Each plan of `group` with its decoded media, or with why it could not be decoded: the
    group in one pass, and clip by clip from where that pass failed (one bad stretch costs only
    its own clips)."""
    done = 0
    try:
        with closing(decode_plans(source, facts, group, config.standardize, config.faces.analysis_max_side)) as media:
            for plan in group:
                started = time.perf_counter()
                got = next(media)
                seconds["decode"] = seconds.get("decode", 0.0) + time.perf_counter() - started
                yield plan, got
                done += 1
        return
    except RuntimeError as exc:
        if len(group) == 1:
            yield group[0], str(exc)
            return
        log.warning("decoding %d clips in one pass failed (%s); decoding the rest one by one", len(group), exc)
    for plan in group[done:]:
        yield from _decoded(source, facts, [plan], config, seconds)


def _facts(plan: ClipPlan, width: int, height: int, config: CurateConfig) -> dict:
    """What the standard clip of `plan` is (or would be, where it is not written)."""
    fps = config.standardize.fps
    facts = {"n_frames": max(1, int(round(plan.length_s * fps))), "width": width, "height": height, "fps": fps,
             "audio_rate": config.standardize.audio_rate, "audio_channels": 1}  # fmt: skip
    if plan.offset_s:  # a section: the source file starts this far into the original video
        facts["offset_s"] = plan.offset_s
    return facts


def _unanalysed(
    plan: ClipPlan, reason: Reason, detail: str, width: int, height: int, config: CurateConfig
) -> ClipResult:
    metrics = {**_facts(plan, width, height, config), "analyzed": True}
    return ClipResult(plan, None, int(metrics["n_frames"]), reason, detail, metrics)
