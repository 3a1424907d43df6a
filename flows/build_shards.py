"""The build_shards flow: a curated work directory -> a WebDataset shard set for training.

Table of contents: read the catalog's clips, tie identities and split them train/val, take
multi-person candidates through the stage-2 path (verdicts into the catalog), plan every
sample, render and write them (skipping samples a complete shard already holds), write the
index, publish the shard table and previews.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.futures import PrefectFuture

from flows.events import shards_published
from flows.in_flight import forget, in_order
from flows.progress import RunProgress
from flows.reporting import publish_shard_artifacts
from flows.runners import ThreadPool
from shards.writer import EncodedSample, ShardWriter, encode_sample, write_index
from tasks.catalog import Catalog
from tasks.config import CurateConfig, load_config
from tasks.dataset.clip_library import LibraryClip, load_library
from tasks.dataset.identities import assign_identities, split_identities
from tasks.dataset.shard_plan import KINDS, PlannedSample, plan_samples, render_sample
from tasks.dataset.stage2.store import record_result, stored_results
from tasks.dataset.stage2.ties import MultiPersonResult, analyze_multiperson, is_candidate


# No tags, as in flows/curate.py: a tagged task run waits for a concurrency-slot request first.
@task(name="stage2-clip", persist_result=False)
def stage2_task(clip: LibraryClip, config: CurateConfig) -> MultiPersonResult:
    return analyze_multiperson(clip, config)


@task(name="render-sample", persist_result=False)
def render_task(
    planned: PlannedSample, clips: dict[str, LibraryClip], stage2: dict[str, MultiPersonResult], config: CurateConfig
) -> EncodedSample:
    """Render and encode one sample in a worker thread: only its compressed members come back."""
    return encode_sample(render_sample(planned, clips, stage2, config), config.shards.crf)


def _stage2(runner, candidates: list[LibraryClip], work: Path, config: CurateConfig, logger) -> dict[str, MultiPersonResult]:
    """Stage-2 results of every candidate: from an earlier run when recorded, else analysed now."""
    results, todo = stored_results(work, candidates)
    futures = {clip.clip_id: (clip, runner.submit(stage2_task, {"clip": clip, "config": config})) for clip in todo}
    with Catalog(work) as catalog:
        for clip_id, (clip, future) in futures.items():
            result = future.result()
            record_result(catalog, work, clip, result)
            if result.rejected is None:
                results[clip_id] = result
            logger.info("stage 2 %s: %s %s", clip_id, result.rejected or "accepted", result.detail)
    return results


def set_id(planned: list[PlannedSample], config: CurateConfig, seed: int) -> str:
    """A shard set's content id: the same clips, plan and settings give the same id."""
    what = {"keys": sorted(p.key for p in planned), "seed": seed, "compose": config.compose.model_dump(mode="json"),
            "shards": config.shards.model_dump(mode="json", exclude={"workers"})}  # fmt: skip
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]


@flow(name="build_shards", log_prints=True, persist_result=False)
def build_shards(
    workdir: str, out: str, identities: list[int] | None = None, seed: int = 0, config_path: str | None = None,
    versioned: bool = False,
) -> dict:  # fmt: skip
    """Build (or resume) the shard set `out` from the curated clips in `workdir`.

    With `versioned`, `out` is a folder of sets and this set goes to `out/set-ID`, ID a hash of
    its plan: new clips make a new set beside the old ones, and the same clips resume the same set.
    A run that writes samples emits `anytalker.shards.published` (the train deployment's trigger).
    """
    logger = get_run_logger()
    config = load_config(config_path)
    if identities:
        compose = config.compose.model_copy(update={"identities": {n: 1.0 for n in identities}})
        config = config.model_copy(update={"compose": compose})
    work = Path(workdir).resolve()
    accepted = load_library(work, ("accepted",))
    candidates = [c for c in load_library(work, ("rejected",)) if is_candidate(c, config)]
    assign_identities([*accepted, *candidates], config.shards.identity_threshold)
    sides = split_identities({c.identity for c in [*accepted, *candidates]}, config.shards.val_share, seed)
    clips = {c.clip_id: c for c in [*accepted, *candidates]}

    with ThreadPool(max_workers=config.shards.workers) as runner:
        stage2 = _stage2(runner, candidates, work, config, logger)
        planned = plan_samples(accepted, stage2, candidates, sides, config, seed)
        sid = set_id(planned, config, seed)
        if versioned:
            out = f"{out.rstrip('/')}/set-{sid}"
        with ShardWriter(out, config.shards.max_samples, config.shards.max_mb * 1024**2, config.shards.crf) as writer:
            todo = [p for p in planned if p.key not in writer.done_keys]
            progress = RunProgress(len(todo), key="shards-progress", desc="samples", unit="sample",
                                   description="Samples written, in percent")  # fmt: skip
            failed: dict[str, str] = {}

            def render(p: PlannedSample) -> PrefectFuture:
                return runner.submit(render_task, {"planned": p, "clips": clips, "stage2": stage2, "config": config})

            # a bounded window of renders in flight, written in plan order
            for p, rendered in in_order(todo, render, 2 * config.shards.workers):
                _write(p, rendered, writer, failed)
                forget(rendered)
                progress.input_done()
            progress.close()
    index = write_index(out, {
        "set_id": sid, "built_from": str(work), "seed": seed, "compose": config.compose.model_dump(mode="json"),
        "planned": {kind: sum(p.kind == kind for p in planned) for kind in KINDS},
        "failed": failed,
    })  # fmt: skip
    publish_shard_artifacts(index, out, str(work))
    samples = {s: v["samples"] for s, v in index["splits"].items()}
    logger.info("shard set %s: %s", out, samples)
    if writer.written and samples.get("train"):
        shards_published(out, sid, writer.written, samples)
    return {"out": out, "set_id": sid, "written": writer.written, "skipped": len(planned) - len(todo), "failed": failed, "index": index}


def _write(planned: PlannedSample, rendered: object, writer: ShardWriter, failed: dict[str, str]) -> None:
    """Write one render; a sample that failed to render or to write is reported, not fatal."""
    error = rendered if isinstance(rendered, BaseException) else None
    if error is None:
        try:
            writer.write(rendered, planned.split)
        except Exception as exc:  # noqa: BLE001 - one bad sample must not stop the set
            error = exc
    if error is not None:
        failed[planned.key] = f"{type(error).__name__}: {error}"
        get_run_logger().error("sample %s failed: %s", planned.key, failed[planned.key])
