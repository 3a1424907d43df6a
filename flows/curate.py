"""The curate flow: inputs -> sources -> analysed clips -> standard clips of the kept ones,
every input accounted for.

Reads like a table of contents: expand the inputs, list the URLs (a playlist or channel
becomes its entries), skip what is done or fetched before, acquire each new one (download,
hash) politely, curate each new source in one task (split, analyse, cut what is kept), record
every outcome and its provenance in the catalog, publish the funnel. The work lives in
`tasks/`; this file decides order, concurrency, per-host limits, the disk floor and bookkeeping.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import TaskRunner

from flows.events import curation_updated
from flows.progress import RunProgress
from flows.reporting import publish_curation_artifacts
from flows.runners import check_cluster, resources, task_runner, task_threads
from tasks.catalog import Catalog
from tasks.config import CurateConfig, load_config
from tasks.curation.analysis.analyze import ClipAnalysis, ClipFailure, analyze_clip, check_models
from tasks.curation.ingest import acquire, expand_inputs
from tasks.curation.scrape import Listing, host_of, list_url, with_retries
from tasks.curation.source import curate_source
from tasks.models import model_threads, threads_per_task
from tasks.records import Acquired, InputItem, Reason, Rejected, Rejection, SourceResult
from tasks.workdir import downloads_dir


@task(name="list-url", tags=["ingest"], persist_result=False)
def list_task(item: InputItem, config: CurateConfig) -> Listing | Rejection:
    """List one URL flat: a video is one entry, a playlist, channel or page its entries."""
    logger = get_run_logger()
    try:
        return with_retries(lambda: list_url(item, config.ingest), item.input, config.ingest, logger.warning)
    except Rejected as exc:
        return Rejection.of(exc)


@task(name="acquire", tags=["ingest"], persist_result=False)
def acquire_task(items: list[InputItem], workdir: Path, config: CurateConfig) -> list[Acquired | Rejection]:
    """Download (with retries that honour Retry-After) or read, and hash inputs: one URL, or a
    batch of local files (one task run for many cheap hashes)."""
    done: list[Acquired | Rejection] = []
    for item in items:
        try:
            done.append(acquire(item, workdir, config.ingest, get_run_logger().warning))
        except Rejected as exc:
            done.append(Rejection.of(exc))
        except Exception as exc:  # noqa: BLE001 - that input's download_failed or internal_error
            reason = Reason.DOWNLOAD_FAILED if item.url else Reason.INTERNAL_ERROR
            done.append(Rejection(reason, f"{type(exc).__name__}: {exc}"))
    return done


@task(name="curate-source", tags=["split", "analyze"], persist_result=False)
def source_task(
    batch: list[Acquired], workdir: Path, config: CurateConfig, threads: int
) -> list[SourceResult | Rejection]:
    """Sources whole, one after another: their shots, the analysis of each clip, the encode of
    the kept ones, the models on `threads` threads. A task run per source (or per batch of small
    ones) keeps Prefect's bookkeeping per source, not per clip; an unexpected error costs only its source."""
    done: list[SourceResult | Rejection] = []
    with model_threads(threads):
        for acquired in batch:
            try:
                done.append(curate_source(acquired, workdir, config))
            except Rejected as exc:
                done.append(Rejection.of(exc))
            except Exception as exc:  # noqa: BLE001 - recorded as that source's internal_error
                get_run_logger().error("internal error on %s: %r", acquired.input, exc)
                done.append(Rejection(Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"))
    return done


@task(name="analyze-clips", tags=["analyze"], persist_result=False)
def analyze_task(
    clips: list[dict], workdir: Path, config: CurateConfig, threads: int
) -> list[ClipAnalysis | ClipFailure]:
    """Analyse a batch of clips written without analysis (by a run with `analyze: false`) in one
    task run, the models on `threads` threads; an unexpected error costs only the clip it happened on."""
    done: list[ClipAnalysis | ClipFailure] = []
    with model_threads(threads):
        for clip in clips:
            try:
                done.append(analyze_clip(clip["path"], clip["source_id"], clip["clip_id"], workdir, config))
            except Exception as exc:  # noqa: BLE001 - recorded as that clip's internal_error
                get_run_logger().error("analysis failed on clip %s: %r", clip["clip_id"], exc)
                done.append(ClipFailure(clip["clip_id"], f"{type(exc).__name__}: {exc}"))
    return done


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
        with model_threads(threads_per_task(config.workers)):  # the copies the local pool's tasks use
            check_models(config)  # one clear error up front if a model is missing, before any work
    check_cluster(config.cluster)
    stats = {"inputs": len(items), "skipped_done": 0, "skipped_fetched": 0, "new_sources": 0, "new_clips": 0,
             "analyzed_clips": 0, "written_clips": 0, "listed": 0, "disk_budget": 0, "stage_seconds": {}}  # fmt: skip

    with task_runner(config.cluster, config.workers) as runner:
        started = time.perf_counter()
        items = _list_urls(runner, items, catalog, config, stats, logger)
        stats["inputs"] = len(items)
        progress = RunProgress(total=len(items))
        acquiring = _acquire_new_inputs(runner, items, catalog, work, config, progress, stats, logger)
        splitting = _split_new_sources(runner, acquiring, catalog, work, config, progress, stats)
        _record_sources(splitting, catalog, work, config, progress, stats, logger)
        stats["phase_seconds"] = {"sources": round(time.perf_counter() - started, 3)}
        if config.analyze and catalog.clips_to_analyze():
            started = time.perf_counter()
            _analyze_clips(runner, catalog, work, config, stats, logger)
            stats["phase_seconds"]["written_before"] = round(time.perf_counter() - started, 3)
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
    acquiring: dict[PrefectFuture, list[InputItem]],
    catalog: Catalog,
    work: Path,
    config: CurateConfig,
    progress: RunProgress,
    stats: dict,
) -> dict[PrefectFuture, list[Acquired]]:
    """Record each acquisition, in input order (so the first of two identical inputs wins),
    and submit every source not done before, in batches of `_batch_size`."""
    splitting: dict[PrefectFuture, list[Acquired]] = {}
    claimed: dict[str, str] = {}  # source id -> the input that brought it in this run
    size = _batch_size(config, sum(len(items) for items in acquiring.values()))
    batch: list[Acquired] = []

    threads = task_threads(runner, config.workers, _source_cpus(config))

    def submit(sources: list[Acquired]) -> None:
        with _source_resources(runner, config):
            job = {"batch": sources, "workdir": work, "config": config, "threads": threads}
            splitting[runner.submit(source_task, job)] = sources

    for future, items in acquiring.items():
        outcomes = _outcome(future)
        if isinstance(outcomes, BaseException):  # the task itself was lost: every input of it fails
            outcomes = [Rejection(Reason.DOWNLOAD_FAILED if i.url else Reason.INTERNAL_ERROR,
                                  f"{type(outcomes).__name__}: {outcomes}") for i in items]  # fmt: skip
        for item, got in zip(items, outcomes, strict=True):
            if isinstance(got, Rejection):
                catalog.record_input(item.input, reason=got.reason, detail=got.detail)
            else:
                first = claimed.get(got.source_id) or catalog.source_input(got.source_id)
                taken = got.source_id in claimed or catalog.source_done(got.source_id)
                if catalog.is_forgotten(got.source_id):
                    catalog.record_input(got.input, source_id=got.source_id, reason=Reason.FORGOTTEN,
                                         detail="these bytes were forgotten with `anytalker forget`")  # fmt: skip
                    _drop_download(got, work, config)
                elif first is not None and first != got.input and taken:
                    detail = f"same bytes as {first}"
                    catalog.record_input(got.input, source_id=got.source_id, reason=Reason.DUPLICATE, detail=detail)
                    _drop_download(got, work, config)
                elif catalog.source_done(got.source_id):
                    _record_acquired_input(catalog, got)
                    _drop_download(got, work, config)
                    stats["skipped_done"] += 1
                else:
                    claimed[got.source_id] = got.input
                    batch.append(got)
                    if len(batch) >= size:
                        submit(batch)
                        batch = []
                    continue
            progress.input_done()
    if batch:
        submit(batch)
    return splitting


def _batch_size(config: CurateConfig, n: int) -> int:
    """Sources (or local files to hash) per task run: up to `cluster.sources_per_task`, fewer so
    that every worker gets at least two task runs of the `n` at hand."""
    return max(1, min(config.cluster.sources_per_task, math.ceil(n / (2 * config.workers))))


def _source_cpus(config: CurateConfig) -> float:
    """What one source's task asks Ray for: the larger of the split and analysis CPUs when it analyses."""
    if not config.analyze:
        return config.cluster.split_cpus
    return max(config.cluster.split_cpus, config.cluster.analyze_cpus)


def _source_resources(runner: TaskRunner, config: CurateConfig):
    """Ray resources of one source's task: `_source_cpus`, and the analysis GPUs when it analyses
    (the models then run on that GPU)."""
    return resources(runner, _source_cpus(config), config.cluster.analyze_gpus if config.analyze else 0.0)


def _record_sources(
    splitting: dict[PrefectFuture, list[Acquired]],
    catalog: Catalog,
    work: Path,
    config: CurateConfig,
    progress: RunProgress,
    stats: dict,
    logger,
) -> None:
    """Record each curated source and its clips as its task finishes; an unexpected error costs
    one source (a lost task run, its batch)."""
    for future in as_completed(list(splitting)):
        batch = splitting[future]
        results = _outcome(future)
        if isinstance(results, BaseException):
            logger.error("a source task failed: %r", results)
            results = [Rejection(Reason.INTERNAL_ERROR, f"{type(results).__name__}: {results}") for _ in batch]
        for got, result in zip(batch, results, strict=True):
            if isinstance(result, SourceResult):
                catalog.record_source(got.input, result)
                stats["new_clips"] += len(result.clips)
                stats["written_clips"] += sum(c.path is not None for c in result.clips)
                stats["analyzed_clips"] += sum("analyzed" in c.metrics for c in result.clips)
                _add_seconds(stats, result.seconds)
                progress.clips_done(sum(c.rejected is None for c in result.clips))
            else:
                catalog.record_rejected_source(got.input, got.source_id, got.path, got.size_bytes, result.reason,
                                               result.detail, result.facts)  # fmt: skip
            _record_acquired_input(catalog, got)
            catalog.record_fetch(got.input, got.source_id, got.provenance)
            _drop_download(got, work, config)
            stats["new_sources"] += 1
            progress.input_done()


def _analyze_clips(
    runner: TaskRunner, catalog: Catalog, work: Path, config: CurateConfig, stats: dict, logger
) -> None:
    """Analyse every written clip not analysed yet, in batches (one task run each, at least two
    per worker); an unexpected error rejects that clip only, a lost task its batch."""
    pending = [dict(row) for row in catalog.clips_to_analyze()]
    size = max(1, min(config.cluster.analyze_batch, math.ceil(len(pending) / (2 * config.workers))))
    batches = [pending[i : i + size] for i in range(0, len(pending), size)]
    threads = task_threads(runner, config.workers, config.cluster.analyze_cpus)
    with resources(runner, config.cluster.analyze_cpus, config.cluster.analyze_gpus):
        futures = {runner.submit(analyze_task, {"clips": b, "workdir": work, "config": config, "threads": threads}): b
                   for b in batches}  # fmt: skip
    for future in as_completed(list(futures)):
        results = _outcome(future)
        if isinstance(results, BaseException):
            logger.error("an analysis task failed: %r", results)
            results = [ClipFailure(c["clip_id"], f"{type(results).__name__}: {results}") for c in futures[future]]
        for result in results:
            if isinstance(result, ClipAnalysis):
                catalog.record_analysis(result.clip_id, result.metrics, result.rejected)
                _add_seconds(stats, result.seconds)
            else:
                catalog.record_analysis(result.clip_id, {"analyzed": True}, Reason.INTERNAL_ERROR, result.error)
            stats["analyzed_clips"] += 1


def _add_seconds(stats: dict, seconds: dict[str, float]) -> None:
    for stage, spent in seconds.items():
        stats["stage_seconds"][stage] = round(stats["stage_seconds"].get(stage, 0.0) + spent, 3)


def _list_urls(
    runner: TaskRunner, items: list[InputItem], catalog: Catalog, config: CurateConfig, stats: dict, logger
) -> list[InputItem]:
    """Replace each URL not done before by what it lists (itself for a video, its entries for a
    playlist, channel or page), in input order, each entry once."""
    listing: dict[int, PrefectFuture] = {}
    for index, item in enumerate(items):
        if item.url and item.refused is None and not catalog.input_done(item.input, None) \
                and not catalog.is_forgotten(item.input):  # fmt: skip
            with resources(runner, config.cluster.acquire_cpus):
                listing[index] = runner.submit(list_task, {"item": item, "config": config})
    expanded: list[InputItem] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        entries = [item]
        if index in listing:
            got = _outcome(listing[index])
            if isinstance(got, Listing):
                entries = got.entries
                if got.kind == "playlist":
                    archived = sum(catalog.archived(e.archive_key) is not None or catalog.input_done(e.input, None)
                                   for e in got.entries)  # fmt: skip
                    catalog.record_listing(got.url, got.title, got.listed, len(got.entries), archived, got.left_out)
                    logger.info("%s lists %d entries: %d taken (%d fetched before), left out %s", got.url, got.listed,
                                len(got.entries), archived, got.left_out or "none")  # fmt: skip
                    stats["listed"] += got.listed
                    if not entries:
                        detail = f"listed {got.listed} entries, none taken (left out: {got.left_out or 'none'})"
                        entries = [InputItem(item.input, refused=Reason.EMPTY_LISTING, detail=detail)]
            else:
                reason, detail = (got.reason, got.detail) if isinstance(got, Rejection) else (
                    Reason.DOWNLOAD_FAILED, f"{type(got).__name__}: {got}")  # fmt: skip
                entries = [InputItem(item.input, refused=reason, detail=detail)]
        for entry in entries:
            if entry.input not in seen:
                seen.add(entry.input)
                expanded.append(entry)
    return expanded


def _acquire_new_inputs(
    runner: TaskRunner,
    items: list[InputItem],
    catalog: Catalog,
    work: Path,
    config: CurateConfig,
    progress: RunProgress,
    stats: dict,
    logger,
) -> dict[PrefectFuture, list[InputItem]]:
    """Submit an acquisition for every input not done, fetched or forgotten before, in input
    order: a task run per URL (at most `ingest.per_host_concurrency` downloads per host at once,
    none once free disk space is under `ingest.min_free_gb`: those wait for the next run,
    rejected as disk_budget), local files in batches (hashing one is cheap)."""
    acquiring: dict[PrefectFuture, list[InputItem]] = {}
    per_host: dict[str, list[PrefectFuture]] = {}
    floor = config.ingest.min_free_gb * 1e9
    todo: list[InputItem] = []
    for item in items:
        fetched = catalog.archived(item.archive_key) if item.url else None
        if item.refused is not None:
            catalog.record_input(item.input, reason=item.refused, detail=item.detail)
        elif catalog.is_forgotten(item.input, item.archive_key):
            catalog.record_input(item.input, reason=Reason.FORGOTTEN, detail="forgotten with `anytalker forget`")
        elif catalog.input_done(item.input, item.path):
            stats["skipped_done"] += 1
            stats["skipped_fetched"] += item.url is not None
        elif fetched is not None and fetched["source_id"] and catalog.source_done(fetched["source_id"]):
            catalog.record_input(item.input, source_id=fetched["source_id"])  # the same video, named another way
            stats["skipped_done"] += 1
            stats["skipped_fetched"] += 1
        else:
            todo.append(item)
            continue
        progress.input_done()
    size = _batch_size(config, len(todo))
    local: list[InputItem] = []

    def submit(batch: list[InputItem]) -> PrefectFuture:
        with resources(runner, config.cluster.acquire_cpus):
            future = runner.submit(acquire_task, {"items": batch, "workdir": work, "config": config})
        acquiring[future] = batch
        return future

    for item in todo:
        if not item.url:
            local.append(item)
            if len(local) >= size:
                submit(local)
                local = []
            continue
        if local:  # keep input order: the local files listed before this URL go first
            submit(local)
            local = []
        if (free := shutil.disk_usage(work).free) < floor:
            detail = (f"not downloaded: {free / 1e9:.1f} GB free in {work}, under ingest.min_free_gb "
                      f"({config.ingest.min_free_gb:g}); free space and rerun to fetch it")  # fmt: skip
            if not stats["disk_budget"]:
                logger.warning("stopped taking new downloads: %s", detail)
            stats["disk_budget"] += 1
            catalog.record_input(item.input, reason=Reason.DISK_BUDGET, detail=detail)
            progress.input_done()
            continue
        _wait_for_host(per_host.setdefault(host_of(item.url), []), config.ingest.per_host_concurrency)
        per_host[host_of(item.url)].append(submit([item]))
    if local:
        submit(local)
    if stats["skipped_fetched"]:
        logger.info("skipped %d entries fetched before (the catalog's archive)", stats["skipped_fetched"])
    return acquiring


def _wait_for_host(in_flight: list[PrefectFuture], limit: int) -> None:
    """Block until fewer than `limit` downloads from this host are running."""
    while True:
        in_flight[:] = [f for f in in_flight if not f.state.is_final()]
        if len(in_flight) < limit:
            return
        next(as_completed(list(in_flight)))


def _drop_download(got: Acquired, work: Path, config: CurateConfig) -> None:
    """With ingest.keep_sources false, a downloaded source goes once its outcome is recorded."""
    if config.ingest.keep_sources or not got.downloaded:
        return
    folder = Path(got.path).parent
    if downloads_dir(work) in folder.parents:
        shutil.rmtree(folder, ignore_errors=True)


def _record_acquired_input(catalog: Catalog, got: Acquired) -> None:
    stat = Path(got.path).stat()
    catalog.record_input(
        got.input, source_id=got.source_id, path=got.path, size_bytes=stat.st_size, mtime_ns=stat.st_mtime_ns
    )

