"""Task runs kept in flight a bounded number at a time, their outcomes taken as they come.

A flow that submits every task run up front holds a future per input (a million, on a million
inputs), and one that reads outcomes only after the last submission records nothing until
then: a crash loses every finished result, and downloads meant to be dropped once recorded
pile up on disk. With a window, the flow holds a few dozen futures and records as it goes.

Prefect also keeps, for the whole flow run, the state of every task result it handed back (and
of each item of a returned list), so that a result passed on to another task records the
dependency (FlowRunContext.run_results; PrefectHQ/prefect#12668). `forget` drops those links
once a result has been recorded and whatever it fed has been submitted, so a run of any
length holds links for the task runs in flight only.
"""

from __future__ import annotations

import queue
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Generic, TypeVar

from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture
from prefect.utilities.collections import visit_collection

J = TypeVar("J")


def outcome(future: PrefectFuture) -> object:
    """The task's return value, or the exception it finally failed with (after its retries)."""
    future.wait()
    if future.state.is_completed():
        return future.result()
    return future.state.result(raise_on_failure=False)


def forget(value: object, keep: Collection[object] = ()) -> None:
    """Drop the flow run's links from `value` (a task's result or inputs) and, for a collection,
    from its items, to the task run states they came from: the same depth at which Prefect
    links a result when its task run completes. Items in `keep` stay linked (passed on later)."""
    context = FlowRunContext.get()
    if context is None:
        return
    kept = {id(k) for k in keep}

    def drop(obj: object) -> None:
        if id(obj) not in kept:
            context.run_results.pop(id(obj), None)

    visit_collection(value, visit_fn=drop, return_data=False, max_depth=1)


def in_order(
    jobs: Iterable[J], submit: Callable[[J], PrefectFuture | None], window: int
) -> Iterator[tuple[J, object | None]]:
    """Each job with the outcome of its task run (None where `submit` made none), in job order,
    with at most `window` task runs submitted and not yet taken. `jobs` is read only when there
    is room, so a check made while producing a job (free disk space, say) is made just before
    its submission, not at the start of the run."""
    pending: deque[tuple[J, PrefectFuture | None]] = deque()
    running = 0
    for job in jobs:
        while running >= window:
            done, future = pending.popleft()
            running -= future is not None
            yield done, None if future is None else outcome(future)
        future = submit(job)
        pending.append((job, future))
        running += future is not None
    while pending:
        done, future = pending.popleft()
        yield done, None if future is None else outcome(future)


class AsCompleted(Generic[J]):
    """Task runs taken in the order they finish, at most `window` unfinished or untaken at once.

    `submit` first takes finished ones, waiting for one while the window is full; `take_finished`
    takes those finished by now without waiting; `drain` waits for the rest. `take` is called on
    the flow's thread, once per task run, with its job and outcome; then both are forgotten
    (`forget`)."""

    def __init__(self, window: int, take: Callable[[J, object], None]) -> None:
        self.window = window
        self._take = take
        self._jobs: dict[PrefectFuture, J] = {}
        self._finished: queue.SimpleQueue[PrefectFuture] = queue.SimpleQueue()
        self.peak = 0

    def submit(self, job: J, start: Callable[[J], PrefectFuture]) -> None:
        self.take_finished()
        while len(self._jobs) >= self.window:
            self._take_one(self._finished.get())
        future = start(job)
        self._jobs[future] = job
        self.peak = max(self.peak, len(self._jobs))
        future.add_done_callback(self._finished.put)  # runs on the worker's thread: only a queue put

    def take_finished(self) -> None:
        while True:
            try:
                future = self._finished.get_nowait()
            except queue.Empty:
                return
            self._take_one(future)

    def drain(self) -> None:
        while self._jobs:
            self._take_one(self._finished.get())

    def _take_one(self, future: PrefectFuture) -> None:
        job, result = self._jobs.pop(future), outcome(future)
        self._take(job, result)
        forget(job)
        forget(result)
