"""Where a flow's tasks run: a local thread pool, or a Ray cluster through prefect-ray.

The choice is configuration (`cluster.ray_address`, else RAY_ADDRESS), not code: the flows
submit the same tasks either way and ask for resources per kind of task. Tasks take and
return small records with paths; media stays in the work storage, never in Ray's object store.
"""

from __future__ import annotations

import os
import queue
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from prefect.futures import PrefectConcurrentFuture, PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from tasks.config import ClusterConfig
from tasks.models import threads_per_task


class ClusterError(ValueError):
    """A Ray address without what distributed runs need (a Prefect server)."""


def ray_address(cluster: ClusterConfig) -> str | None:
    """The Ray cluster to use: the config's, else RAY_ADDRESS, else none (a local pool)."""
    return cluster.ray_address or os.environ.get("RAY_ADDRESS") or None


def check_cluster(cluster: ClusterConfig) -> None:
    """Ray workers report task states to Prefect's API. Without a server each worker would start
    its own temporary one (tens of seconds each, and the runs would not show on a dashboard)."""
    if ray_address(cluster) is None:
        return
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        raise ClusterError(
            f"the curate flow runs on the Ray cluster at {ray_address(cluster)!r}, which needs a Prefect server: "
            "set PREFECT_API_URL (start one with `anytalker dashboard`)"
        )


SECRET_WORDS = ("KEY", "SECRET", "TOKEN", "PASSWORD", "AUTH")


def worker_environment() -> dict[str, str]:
    """What a Ray worker needs from this process's environment: the Prefect API URL and settings,
    and the project's model locations. Ray shows a job's runtime_env on its dashboard, so
    credentials (PREFECT_API_KEY, an auth string) are left out: set them on the nodes themselves."""
    return {
        k: v for k, v in os.environ.items()
        if k.startswith(("PREFECT_", "ANYTALKER_")) and k != "PREFECT_HOME" and not any(w in k for w in SECRET_WORDS)
    }  # fmt: skip


class ThreadPool(ThreadPoolTaskRunner):
    """Prefect's thread pool, without its growth per task run: ThreadPoolTaskRunner keeps a
    cancel event for every task run submitted until the flow run ends (1.3 kB each, so 2.6 GB
    for two task runs a source over a million sources). Here the events of finished task runs
    are dropped at the next submission, on the submitting thread: the one that also sets all
    of them when the runner exits, so the two never change the events at once."""

    def __init__(self, max_workers: int | None = None) -> None:
        super().__init__(max_workers=max_workers)
        self._finished_runs: queue.SimpleQueue[uuid.UUID] = queue.SimpleQueue()

    def submit(
        self, task: Any, parameters: dict[str, Any], wait_for: Iterable[PrefectFuture[Any]] | None = None,
        dependencies: dict[str, set[Any]] | None = None,
    ) -> PrefectConcurrentFuture[Any]:  # fmt: skip
        while True:
            try:
                self._cancel_events.pop(self._finished_runs.get_nowait(), None)
            except queue.Empty:
                break
        future = super().submit(task, parameters, wait_for, dependencies)
        run_id = future.task_run_id
        future.wrapped_future.add_done_callback(lambda _: self._finished_runs.put(run_id))
        return future


def task_runner(cluster: ClusterConfig, workers: int) -> TaskRunner:
    """prefect-ray's RayTaskRunner on the configured cluster, else a pool of `workers` threads
    (threads suffice locally: the heavy work runs in ffmpeg and native decoders)."""
    address = ray_address(cluster)
    if address is None:
        return ThreadPool(max_workers=workers)
    from prefect_ray import RayTaskRunner

    init = {"runtime_env": {"env_vars": worker_environment()}, "log_to_driver": True}
    return RayTaskRunner(address=address, init_kwargs=init)


def task_threads(runner: TaskRunner, workers: int, cpus: float) -> int:
    """Threads for the models of one task (`tasks.models.model_threads`): on the local pool, the
    cores over the `workers` tasks that share this process; on Ray, the CPUs the task asked for
    (each task has a worker process of its own)."""
    if isinstance(runner, ThreadPoolTaskRunner):
        return threads_per_task(workers)
    return max(1, int(cpus))


WINDOW = 64  # task runs of one kind in flight by default, at least (benchmarks/curate_scale.py, README)


def task_window(runner: TaskRunner, cluster: ClusterConfig, workers: int, cpus: float) -> int:
    """How many task runs of one kind a flow keeps submitted and not yet taken (`flows.in_flight`):
    `cluster.in_flight` when set, else WINDOW or twice what can run at once, whichever is larger
    (on the local pool twice `workers`, on Ray twice the cluster's CPUs over `cpus`, the CPUs each
    such task asks for, counted at the start). On the local pool the size costs nothing measurable
    since the tasks carry no tags (400 small sources, a task run each: a window of 4 83.5 s, of 64
    80.2 and 87.6 s in two runs, every task run submitted 88.2 s); before, each task run's start
    waited on Prefect's request for tag concurrency slots, and small windows left the workers idle
    meanwhile (README, "Curation at scale"). 64 leaves a cluster's workers a queue to start from
    while each task run starts (not measured on a cluster). An autoscaling cluster grows on queued
    tasks: set `cluster.in_flight` to what its largest size can run."""
    if cluster.in_flight:
        return cluster.in_flight
    if isinstance(runner, ThreadPoolTaskRunner):
        return max(WINDOW, 2 * workers)
    import ray

    return max(WINDOW, 2 * workers, 2 * int(ray.cluster_resources().get("CPU", 0) / cpus))


@contextmanager
def resources(runner: TaskRunner, cpus: float, gpus: float = 0.0) -> Iterator[None]:
    """Tasks submitted inside ask the Ray cluster for these resources; a no-op on a local pool."""
    if isinstance(runner, ThreadPoolTaskRunner):
        yield
        return
    from prefect_ray.context import remote_options

    options: dict[str, float] = {"num_cpus": cpus}
    if gpus:
        options["num_gpus"] = gpus
    with remote_options(**options):
        yield
