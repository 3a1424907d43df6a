"""The curate flow: inputs -> sources -> analysed clips -> standard clips of the kept ones,
every input accounted for.

Reads like a table of contents: expand the inputs, list the URLs (a playlist or channel
becomes its entries), skip what is done or fetched before, acquire each new one (download,
hash) politely, curate each new source in one task (split, analyse, cut what is kept), record
every outcome and its provenance in the catalog as it comes, publish the funnel. Acquisitions
and curations run at once, a bounded number of each in flight (`flows/in_flight.py`), so a run
of any length holds a few dozen futures and downloads. The work lives in `tasks/`; this file
decides order, concurrency, per-host limits, the disk floor and bookkeeping.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.futures import PrefectFuture, as_completed
from prefect.task_runners import TaskRunner

from flows.events import curation_updated
from flows.in_flight import AsCompleted, forget, in_order
from flows.progress import RunProgress
from flows.reporting import publish_curation_artifacts
from flows.runners import check_cluster, resources, task_runner, task_threads, task_window
from tasks.catalog import Catalog
from tasks.config import CurateConfig, load_config
from tasks.curation.analysis.analyze import ClipAnalysis, ClipFailure, analyze_clip, check_models
from tasks.curation.ingest import acquire, expand_inputs
from tasks.curation.scrape import Listing, host_of, list_url, with_retries
from tasks.curation.source import curate_source
from tasks.models import model_threads, threads_per_task
from tasks.records import Acquired, InputItem, Reason, Rejected, Rejection, SourceResult
from tasks.workdir import downloads_dir


# The tasks carry no tags: Prefect asks the server for a concurrency slot of each tag before every
# tagged task run starts, one request at a time per set of tags, and on many small sources that
# wait was over 40% of the workers' time (README, "Curation at scale"). Their names tell them apart.
@task(name="list-url", persist_result=False)
def list_task(item: InputItem, config: CurateConfig) -> Listing | Rejection:
    """List one URL flat: a video is one entry, a playlist, channel or page its entries."""
    logger = get_run_logger()
    try:
        return with_retries(lambda: list_url(item, config.ingest), item.input, config.ingest, logger.warning)
    except Rejected as exc:
        return Rejection.of(exc)


@task(name="acquire", persist_result=False)
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


@task(name="curate-source", persist_result=False)
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


@task(name="analyze-clips", persist_result=False)
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
        todo = _new_inputs(items, catalog, progress, stats)
        _NewSources(runner, catalog, work, config, progress, stats, logger).run(todo)
        if stats["skipped_fetched"]:
            logger.info("skipped %d entries fetched before (the catalog's archive)", stats["skipped_fetched"])
        stats["phase_seconds"] = {"sources": round(time.perf_counter() - started, 3)}
        if config.analyze and catalog.clips_to_analyze():
            started = time.perf_counter()
            _analyze_clips(runner, catalog, work, config, stats, logger)
            stats["phase_seconds"]["written_before"] = round(time.perf_counter() - started, 3)
    progress.close()

    counts = publish_curation_artifacts(catalog, stats, str(work))
    catalog.close()
    if stats["new_clips"]:
        curation_updated(str(work), stats["new_clips"], counts)
    logger.info("curated %d inputs: %s", len(items), counts)
    return {"counts": counts, "run": stats, "workdir": str(work)}


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


def _analyze_clips(
    runner: TaskRunner, catalog: Catalog, work: Path, config: CurateConfig, stats: dict, logger
) -> None:
    """Analyse every written clip not analysed yet, in batches (one task run each, at least two
    per worker); an unexpected error rejects that clip only, a lost task its batch."""
    pending = [dict(row) for row in catalog.clips_to_analyze()]
    size = max(1, min(config.cluster.analyze_batch, math.ceil(len(pending) / (2 * config.workers))))
    threads = task_threads(runner, config.workers, config.cluster.analyze_cpus)

    def start(clips: list[dict]) -> PrefectFuture:
        with resources(runner, config.cluster.analyze_cpus, config.cluster.analyze_gpus):
            return runner.submit(analyze_task, {"clips": clips, "workdir": work, "config": config, "threads": threads})

    def record(clips: list[dict], results: object) -> None:
        if isinstance(results, BaseException):
            logger.error("an analysis task failed: %r", results)
            results = [ClipFailure(c["clip_id"], f"{type(results).__name__}: {results}") for c in clips]
        for result in results:
            if isinstance(result, ClipAnalysis):
                catalog.record_analysis(result.clip_id, result.metrics, result.rejected)
                _add_seconds(stats, result.seconds)
            else:
                catalog.record_analysis(result.clip_id, {"analyzed": True}, Reason.INTERNAL_ERROR, result.error)
            stats["analyzed_clips"] += 1

    analyses = AsCompleted(task_window(runner, config.cluster, config.workers, config.cluster.analyze_cpus), record)
    for i in range(0, len(pending), size):
        analyses.submit(pending[i : i + size], start)
    analyses.drain()


def _add_seconds(stats: dict, seconds: dict[str, float]) -> None:
    for stage, spent in seconds.items():
        stats["stage_seconds"][stage] = round(stats["stage_seconds"].get(stage, 0.0) + spent, 3)


def _list_urls(
    runner: TaskRunner, items: list[InputItem], catalog: Catalog, config: CurateConfig, stats: dict, logger
) -> list[InputItem]:
    """Replace each URL not done before by what it lists (itself for a video, its entries for a
    playlist, channel or page), in input order, each entry once."""

    def submit(item: InputItem) -> PrefectFuture | None:
        if not item.url or item.refused is not None or catalog.input_done(item.input, None) \
                or catalog.is_forgotten(item.input):  # fmt: skip
            return None
        with resources(runner, config.cluster.acquire_cpus):
            return runner.submit(list_task, {"item": item, "config": config})

    expanded: list[InputItem] = []
    seen: set[str] = set()
    window = task_window(runner, config.cluster, config.workers, config.cluster.acquire_cpus)
    for item, got in in_order(items, submit, window):
        entries = [item]
        if got is not None:
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
            forget(got)
        for entry in entries:
            if entry.input not in seen:
                seen.add(entry.input)
                expanded.append(entry)
    return expanded


def _new_inputs(
    items: list[InputItem], catalog: Catalog, progress: RunProgress, stats: dict
) -> list[InputItem]:
    """The inputs to acquire: not refused, forgotten, done, or fetched before (as another name of
    a done source); every other one is recorded here."""
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
    return todo


class _NewSources:
    """Acquire the new inputs and curate their sources, both under way at once, each a bounded
    number of task runs at a time (`task_window`): acquisitions are taken in input order (so
    the first of two identical inputs wins) and their new sources batched into source task
    runs, each recorded in the catalog as soon as it finishes. So a run of any length holds a
    few dozen futures, keeps only the downloads of sources in flight (with ingest.keep_sources
    false), and a crash loses only what was in flight."""

    def __init__(
        self, runner: TaskRunner, catalog: Catalog, work: Path, config: CurateConfig, progress: RunProgress,
        stats: dict, logger,
    ) -> None:  # fmt: skip
        self.runner, self.catalog, self.work, self.config = runner, catalog, work, config
        self.progress, self.stats, self.logger = progress, stats, logger
        self.threads = task_threads(runner, config.workers, _source_cpus(config))
        window = task_window(runner, config.cluster, config.workers, _source_cpus(config))
        self.sources = AsCompleted(window, self._record)
        self.per_host: dict[str, list[PrefectFuture]] = {}
        self.claimed: dict[str, str] = {}  # source id -> the input that brought it, until the catalog knows it
        self.batch: list[Acquired] = []
        self.size = 1

    def run(self, todo: list[InputItem]) -> None:
        self.size = _batch_size(self.config, len(todo))
        window = task_window(self.runner, self.config.cluster, self.config.workers, self.config.cluster.acquire_cpus)
        for items, outcomes in in_order(self._acquisitions(todo), self._acquire, window):
            self.sources.take_finished()
            self._take_acquired(items, outcomes)
        if self.batch:
            self._submit_sources()
        self.sources.drain()
        self.stats["in_flight_peak"] = self.sources.peak

    def _acquisitions(self, todo: list[InputItem]) -> Iterator[list[InputItem]]:
        """Batches to acquire, in input order: local files `size` at a time (hashing one is cheap),
        a URL alone (at most `ingest.per_host_concurrency` downloads per host at once). Free disk
        space is checked just before each download: under `ingest.min_free_gb`, the URL waits for
        the next run, rejected as disk_budget."""
        floor = self.config.ingest.min_free_gb * 1e9
        local: list[InputItem] = []
        for item in todo:
            if not item.url:
                local.append(item)
                if len(local) >= self.size:
                    yield local
                    local = []
                continue
            if local:  # keep input order: the local files listed before this URL go first
                yield local
                local = []
            if (free := shutil.disk_usage(self.work).free) < floor:
                detail = (f"not downloaded: {free / 1e9:.1f} GB free in {self.work}, under ingest.min_free_gb "
                          f"({self.config.ingest.min_free_gb:g}); free space and rerun to fetch it")  # fmt: skip
                if not self.stats["disk_budget"]:
                    self.logger.warning("stopped taking new downloads: %s", detail)
                self.stats["disk_budget"] += 1
                self.catalog.record_input(item.input, reason=Reason.DISK_BUDGET, detail=detail)
                self.progress.input_done()
                continue
            yield [item]
        if local:
            yield local

    def _acquire(self, items: list[InputItem]) -> PrefectFuture:
        url = items[0].url
        if url:
            _wait_for_host(self.per_host.setdefault(host_of(url), []), self.config.ingest.per_host_concurrency)
        with resources(self.runner, self.config.cluster.acquire_cpus):
            future = self.runner.submit(acquire_task, {"items": items, "workdir": self.work, "config": self.config})
        if url:
            self.per_host[host_of(url)].append(future)
        return future

    def _take_acquired(self, items: list[InputItem], outcomes: object) -> None:
        """Record each acquisition of a batch; queue every source not done before for curation
        (which stays linked to its acquisition until its own task run is taken: `forget`)."""
        catalog = self.catalog
        queued: list[Acquired] = []
        if isinstance(outcomes, BaseException):  # the task itself was lost: every input of it fails
            outcomes = [Rejection(Reason.DOWNLOAD_FAILED if i.url else Reason.INTERNAL_ERROR,
                                  f"{type(outcomes).__name__}: {outcomes}") for i in items]  # fmt: skip
        for item, got in zip(items, outcomes, strict=True):
            if isinstance(got, Rejection):
                catalog.record_input(item.input, reason=got.reason, detail=got.detail)
            else:
                first = self.claimed.get(got.source_id) or catalog.source_input(got.source_id)
                taken = got.source_id in self.claimed or catalog.source_done(got.source_id)
                if catalog.is_forgotten(got.source_id):
                    catalog.record_input(got.input, source_id=got.source_id, reason=Reason.FORGOTTEN,
                                         detail="these bytes were forgotten with `anytalker forget`")  # fmt: skip
                    _drop_download(got, self.work, self.config)
                elif first is not None and first != got.input and taken:
                    detail = f"same bytes as {first}"
                    catalog.record_input(got.input, source_id=got.source_id, reason=Reason.DUPLICATE, detail=detail)
                    _drop_download(got, self.work, self.config)
                elif catalog.source_done(got.source_id):
                    _record_acquired_input(catalog, got)
                    _drop_download(got, self.work, self.config)
                    self.stats["skipped_done"] += 1
                else:
                    self.claimed[got.source_id] = got.input
                    self.batch.append(got)
                    queued.append(got)
                    if len(self.batch) >= self.size:
                        self._submit_sources()
                    continue
            self.progress.input_done()
        forget(outcomes, keep=queued)

    def _submit_sources(self) -> None:
        batch, self.batch = self.batch, []

        def start(sources: list[Acquired]) -> PrefectFuture:
            with _source_resources(self.runner, self.config):
                job = {"batch": sources, "workdir": self.work, "config": self.config, "threads": self.threads}
                return self.runner.submit(source_task, job)

        self.sources.submit(batch, start)

    def _record(self, batch: list[Acquired], results: object) -> None:
        """Record a finished source task: each source and its clips, or its rejection (a lost task
        run rejects its batch as internal_error)."""
        catalog, stats = self.catalog, self.stats
        if isinstance(results, BaseException):
            self.logger.error("a source task failed: %r", results)
            results = [Rejection(Reason.INTERNAL_ERROR, f"{type(results).__name__}: {results}") for _ in batch]
        for got, result in zip(batch, results, strict=True):
            if isinstance(result, SourceResult):
                catalog.record_source(got.input, result)
                stats["new_clips"] += len(result.clips)
                stats["written_clips"] += sum(c.path is not None for c in result.clips)
                stats["analyzed_clips"] += sum("analyzed" in c.metrics for c in result.clips)
                _add_seconds(stats, result.seconds)
                self.progress.clips_done(sum(c.rejected is None for c in result.clips))
            else:
                catalog.record_rejected_source(got.input, got.source_id, got.path, got.size_bytes, result.reason,
                                               result.detail, result.facts)  # fmt: skip
            _record_acquired_input(catalog, got)
            catalog.record_fetch(got.input, got.source_id, got.provenance)
            _drop_download(got, self.work, self.config)
            if catalog.source_done(got.source_id):  # from now on the catalog answers for it
                self.claimed.pop(got.source_id, None)
            stats["new_sources"] += 1
            self.progress.input_done()


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

