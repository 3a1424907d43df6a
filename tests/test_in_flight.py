"""A long flow run holds Prefect bookkeeping for its task runs in flight only.

Prefect keeps, for the whole flow run, a state per task result (and per item of a returned
list) and its thread pool a cancel event per task run: a curate run over a million sources
would hold millions of each. `flows.in_flight.forget` and `flows.runners.ThreadPool` drop them
once a task run is taken; these tests run real flows on the session's Prefect server and count
what is left.
"""

from __future__ import annotations

import time
import uuid

from prefect import flow, task
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.objects import TaskRun
from prefect.context import FlowRunContext
from prefect.exceptions import ObjectNotFound

from flows.in_flight import AsCompleted, forget
from flows.runners import ThreadPool

RUNS = 30
WINDOW = 3


def recorded_task_run(client: SyncPrefectClient, task_run_id: uuid.UUID, patience_s: float = 60.0) -> TaskRun:
    """The task run as the server recorded it. The server records task runs from the events the
    flow process sends, after the flow run may have returned; on a loaded machine that lags."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            return client.read_task_run(task_run_id)
        except ObjectNotFound:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class Item:
    """A task's result item, weak-referenceable as the flow's dataclass records are."""

    def __init__(self, n: int) -> None:
        self.n = n


@task
def make(n: int) -> list[Item]:
    return [Item(n), Item(-n)]


@task
def total(items: list[Item]) -> int:
    return sum(i.n for i in items)


def test_a_long_run_keeps_links_and_cancel_events_for_the_task_runs_in_flight_only(prefect_server) -> None:
    @flow
    def many() -> dict:
        taken: list[list[Item]] = []
        with ThreadPool(max_workers=2) as runner:
            window = AsCompleted(WINDOW, lambda n, got: taken.append(got))
            for n in range(1, RUNS + 1):
                window.submit(n, lambda n: runner.submit(make, {"n": n}))
            window.drain()
            links = len(FlowRunContext.get().run_results)
            runner.submit(total, {"items": []}).wait()  # a submission drops the finished runs' events
            events = len(runner._cancel_events)
        return {"taken": taken, "links": links, "events": events, "peak": window.peak}

    got = many()
    assert sorted(item.n for batch in got["taken"] for item in batch) == sorted(
        [n for n in range(1, RUNS + 1)] + [-n for n in range(1, RUNS + 1)]
    )
    assert got["peak"] == WINDOW
    # Before: a link for each of the 30 returned lists and their 60 items, and 31 events.
    assert got["links"] == 0
    assert got["events"] <= 1 + WINDOW  # the last run's own, and any whose done-callback is still on its way


def test_a_result_kept_linked_still_records_where_the_next_task_run_got_its_input(prefect_server) -> None:
    @flow
    def chain() -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
        with ThreadPool(max_workers=2) as runner:
            made = runner.submit(make, {"n": 7})
            items = made.result()
            forget(items, keep=items[:1])
            kept = runner.submit(total, {"items": items[:1]})
            dropped = runner.submit(total, {"items": items[1:]})
            assert (kept.result(), dropped.result()) == (7, -7)
            return made.task_run_id, kept.task_run_id, dropped.task_run_id

    made_id, kept_id, dropped_id = chain()
    with get_client(sync_client=True) as client:
        kept_inputs = recorded_task_run(client, kept_id).task_inputs["items"]
        dropped_inputs = recorded_task_run(client, dropped_id).task_inputs["items"]
    assert [i.id for i in kept_inputs] == [made_id]
    assert dropped_inputs == []


def test_task_runs_of_the_per_source_and_per_sample_tasks_ask_the_server_for_no_concurrency_slots(
    prefect_server, tmp_path
) -> None:
    """Prefect's task engine asks the server for a concurrency slot of every tag a task run
    carries, one request at a time per set of tags, before the task starts. On 400 small
    sources that wait was over 40% of the workers' time and cost the flow 1.5-2.0x its wall time
    (README, "Curation at scale"), so the tasks that run per source, per clip batch or per
    sample carry no tags: the task names tell them apart in the UI."""
    from prefect import Task

    import flows.build_shards
    import flows.curate
    from tasks.config import CurateConfig
    from tasks.curation.ingest import expand_inputs

    tasks = {t.name: t for m in (flows.curate, flows.build_shards) for t in vars(m).values() if isinstance(t, Task)}
    assert {"list-url", "acquire", "curate-source", "analyze-clips", "stage2-clip", "render-sample"} <= set(tasks)
    assert {name: sorted(t.tags) for name, t in tasks.items() if t.tags} == {}

    config = CurateConfig(analyze=False)
    (tmp_path / "one.mp4").write_bytes(b"not a video")

    @flow
    def acquire_one() -> uuid.UUID:
        items = expand_inputs([str(tmp_path / "one.mp4")], config.ingest)
        with ThreadPool(max_workers=1) as runner:
            future = runner.submit(flows.curate.acquire_task, {"items": items, "workdir": tmp_path, "config": config})
            future.wait()
            return future.task_run_id

    with get_client(sync_client=True) as client:
        assert recorded_task_run(client, acquire_one()).tags == []  # what the engine asks slots for
