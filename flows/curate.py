"""The curate flow: inputs -> sources -> shots -> standard clips, every input accounted for.

Reads like a table of contents: expand the inputs, acquire each (download, hash), skip what is
done, split each new source, record every outcome in the catalog, publish the funnel.
The work lives in `tasks/`; this file decides order, concurrency, retries and bookkeeping.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import TaskRunner
from prefect.tasks import exponential_backoff

from flows.events import curation_updated
from flows.progress import RunProgress
from flows.reporting import publish_curation_artifacts
from flows.runners import check_cluster, resources, task_runner
from tasks.analyze import ClipAnalysis, analyze_clip, check_models
from tasks.catalog import Catalog
from tasks.config import CurateConfig, load_config
from tasks.ingest import acquire, expand_inputs
from tasks.records import Acquired, InputItem, Reason, Rejected, Rejection, SourceResult
from tasks.source import split_source


@task(name="acquire", tags=["ingest"], persist_result=False)
def acquire_task(item: InputItem, workdir: Path, config: CurateConfig) -> Acquired | Rejection:
    """Download (URLs raise to be retried) and hash one input."""
    try:
        return acquire(item, workdir, config.ingest)
    except Rejected as exc:
        return Rejection.of(exc)


@task(name="split-source", tags=["split"], persist_result=False)
def split_task(acquired: Acquired, workdir: Path, config: CurateConfig) -> SourceResult | Rejection:
    try:
        return split_source(acquired, workdir, config)
    except Rejected as exc:
        return Rejection.of(exc)


@task(name="analyze-clip", tags=["analyze"], persist_result=False)
def analyze_task(path: str, source_id: str, clip_id: str, workdir: Path, config: CurateConfig) -> ClipAnalysis:
    return analyze_clip(path, source_id, clip_id, workdir, config)


def _outcome(future: PrefectFuture) -> object:
    """The task's return value, or the exception it finally failed with (after its retries)."""
    future.wait()
    if future.state.is_completed():
        return future.result()
    return future.state.result(raise_on_failure=False)


@flow(name="curate", log_prints=True, persist_result=False)
def curate(inputs: list[str], workdir: str, config_path: str | None = None) -> dict:
    """Curate `inputs` (files, folders, list files, http(s) URLs) into standard clips in `workdir`."""
    logger = get_run_logger()
    config = load_config(config_path)
    work = Path(workdir).resolve()
    catalog = Catalog(work)
    items = expand_inputs(inputs, config.ingest)
    if config.analyze:
        check_models(config)  # one clear error up front if a model is missing, before any work
    check_cluster(config.cluster)
    progress = RunProgress(total=len(items))
    stats = {"inputs": len(items), "skipped_done": 0, "new_sources": 0, "new_clips": 0, "analyzed_clips": 0}

    download = acquire_task.with_options(
        retries=config.ingest.download_retries,
        retry_delay_seconds=exponential_backoff(backoff_factor=config.ingest.download_backoff_s),
    )
    with task_runner(config.cluster, config.workers) as runner:
        acquiring: dict[PrefectFuture, InputItem] = {}
        for item in items:
            if item.refused is not None:
                catalog.record_input(item.input, reason=item.refused, detail=item.detail)
                progress.input_done()
            elif catalog.input_done(item.input, item.path):
                stats["skipped_done"] += 1
                progress.input_done()
            else:
                args = {"item": item, "workdir": work, "config": config}
                with resources(runner, config.cluster.acquire_cpus):
                    acquiring[runner.submit(download if item.url else acquire_task, args)] = item
        splitting = _split_new_sources(runner, acquiring, catalog, work, config, progress, stats)
        _record_splits(splitting, catalog, progress, stats, logger)
        if config.analyze:
            _analyze_clips(runner, catalog, work, config, stats, logger)
    progress.close()

    report = catalog.report()
    catalog.close()
    publish_curation_artifacts(report, stats, str(work))
    if stats["new_clips"]:
        curation_updated(str(work), stats["new_clips"], report["counts"])
    logger.info("curated %d inputs: %s", len(items), report["counts"])
    return {"counts": report["counts"], "run": stats, "workdir": str(work)}


def _split_new_sources(
    runner: TaskRunner,
    acquiring: dict[PrefectFuture, InputItem],
    catalog: Catalog,
    work: Path,
    config: CurateConfig,
    progress: RunProgress,
    stats: dict,
) -> dict[PrefectFuture, Acquired]:
    """Record each acquisition, in input order (so the first of two identical inputs wins),
    and submit a split for every source not done before."""
    splitting: dict[PrefectFuture, Acquired] = {}
    claimed: dict[str, str] = {}  # source id -> the input that brought it in this run
    for future, item in acquiring.items():
        got = _outcome(future)
        if isinstance(got, Rejection):
            catalog.record_input(item.input, reason=got.reason, detail=got.detail)
        elif isinstance(got, BaseException):
            reason = Reason.DOWNLOAD_FAILED if item.url else Reason.INTERNAL_ERROR
            catalog.record_input(item.input, reason=reason, detail=f"{type(got).__name__}: {got}")
        else:
            first = claimed.get(got.source_id) or catalog.source_input(got.source_id)
            taken = got.source_id in claimed or catalog.source_done(got.source_id)
            if first is not None and first != got.input and taken:
                detail = f"same bytes as {first}"
                catalog.record_input(got.input, source_id=got.source_id, reason=Reason.DUPLICATE, detail=detail)
            elif catalog.source_done(got.source_id):
                _record_acquired_input(catalog, got)
                stats["skipped_done"] += 1
            else:
                claimed[got.source_id] = got.input
                with resources(runner, config.cluster.split_cpus):
                    splitting[runner.submit(split_task, {"acquired": got, "workdir": work, "config": config})] = got
                continue
        progress.input_done()
    return splitting


def _record_splits(
    splitting: dict[PrefectFuture, Acquired], catalog: Catalog, progress: RunProgress, stats: dict, logger
) -> None:
    """Record each split source and its clips as it finishes; an unexpected error costs one source."""
    for future in as_completed(list(splitting)):
        got = splitting[future]
        result = _outcome(future)
        if isinstance(result, SourceResult):
            catalog.record_source(got.input, result)
            stats["new_clips"] += len(result.clips)
            progress.clips_done(sum(c.rejected is None for c in result.clips))
        else:
            if isinstance(result, Rejection):
                reason, detail, facts = result.reason, result.detail, result.facts
            else:
                logger.error("internal error on %s: %r", got.input, result)
                reason, detail, facts = Reason.INTERNAL_ERROR, f"{type(result).__name__}: {result}", {}
            catalog.record_rejected_source(got.input, got.source_id, got.path, got.size_bytes, reason, detail, facts)
        _record_acquired_input(catalog, got)
        stats["new_sources"] += 1
        progress.input_done()


def _analyze_clips(
    runner: TaskRunner, catalog: Catalog, work: Path, config: CurateConfig, stats: dict, logger
) -> None:
    """Analyse every written clip not analysed yet; an unexpected error rejects that clip only."""
    pending = catalog.clips_to_analyze()
    with resources(runner, config.cluster.analyze_cpus, config.cluster.analyze_gpus):
        futures = {
            runner.submit(
                analyze_task,
                {"path": row["path"], "source_id": row["source_id"], "clip_id": row["clip_id"], "workdir": work,
                 "config": config},
            ): row["clip_id"]
            for row in pending
        }  # fmt: skip
    for future in as_completed(list(futures)):
        result = _outcome(future)
        if isinstance(result, ClipAnalysis):
            catalog.record_analysis(result.clip_id, result.metrics, result.rejected)
        else:
            logger.error("analysis failed on clip %s: %r", futures[future], result)
            catalog.record_analysis(
                futures[future], {"analyzed": True}, Reason.INTERNAL_ERROR, f"{type(result).__name__}: {result}"
            )
        stats["analyzed_clips"] += 1


def _record_acquired_input(catalog: Catalog, got: Acquired) -> None:
    stat = Path(got.path).stat()
    catalog.record_input(
        got.input, source_id=got.source_id, path=got.path, size_bytes=stat.st_size, mtime_ns=stat.st_mtime_ns
    )

