"""Every model a process uses, loaded once, with one error type and one rule for the device.

Why one registry: the flow's thread pool shares one copy of each model between its threads,
and a Ray worker process keeps its copies across the task runs Ray gives it (worker processes
are reused), so a model is loaded once per process, never per clip or per source. Each entry
has its own lock: two threads asking for the same model wait for one load, while a third loads
another. MediaPipe's landmarker and pocketsphinx's decoder are not thread-safe and are kept one
per thread instead (landmarks.py, phones.py).

The device: a model runs on the GPU when the task asked the cluster for one
(`cluster.analyze_gpus` > 0; Ray then makes that GPU visible to the worker) and a CUDA build is
installed (onnxruntime-gpu for the face models, a CUDA torch for Light-ASD and SyncNet, a CUDA
torch in .venv-speech for whisperx); otherwise on the CPU, so the same config runs on a CPU node.

The threads: on the CPU, a model's operators run on a pool of threads that by default takes
every core (onnxruntime's, spinning between calls; torch's; OpenCV's). A flow runs several tasks
at once, each calling models, so the pools fight for the cores. `model_threads` gives every model
call of a task its share instead: the cores over the tasks that run at once in this process, or
the CPUs a Ray task asked for. Measured on 2 cores, 4 clips analysed 2 at a time: 30.9 s wall
with the default pools, 24.5 s with one thread each (benchmarks/curate_e2e.py has the flow's figure).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

_LOADED: dict[tuple[str, str], object] = {}
_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_GUARD = threading.Lock()
_BUDGETS: list[int] = []  # the thread budgets of the tasks running in this process
_CV2_DEFAULT: list[int] = []  # OpenCV's pool size before the first budget


class ModelsMissing(RuntimeError):
    """A model file or folder that is not there; the message says where to get it."""


def load_once(kind: str, key: str, make: Callable[[], T]) -> T:
    """The `kind` model for `key` (its path, and what else changes it: the device), made by
    `make` the first time any thread of this process asks for it."""
    entry = (kind, key)
    with _GUARD:
        if entry in _LOADED:
            return _LOADED[entry]  # type: ignore[return-value]
        lock = _LOCKS.setdefault(entry, threading.Lock())
    with lock:
        if entry not in _LOADED:
            _LOADED[entry] = make()
        return _LOADED[entry]  # type: ignore[return-value]


def loaded_models() -> list[tuple[str, str]]:
    """What this process has loaded, as (kind, key): for the run's log and the tests."""
    with _GUARD:
        return sorted(_LOADED)


def torch_device(gpus: float) -> str:
    """"cuda" when the task asked for a GPU and torch sees one, else "cpu"."""
    if gpus <= 0:
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def onnx_providers(gpus: float, available: list[str] | None = None) -> list[str]:
    """onnxruntime providers: CUDA first when the task asked for a GPU and onnxruntime-gpu
    offers it (CPU stays as the fallback for operators CUDA lacks); else the CPU alone."""
    if gpus <= 0:
        return ["CPUExecutionProvider"]
    if available is None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and Ray set)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def threads_per_task(workers: int) -> int:
    """A task's share of this machine's cores when `workers` tasks run at once in one process."""
    return max(1, available_cores() // workers)


@contextmanager
def model_threads(threads: int) -> Iterator[None]:
    """Run the models called inside on `threads` threads: torch's pool for the calling thread (its
    size is kept per thread, OpenMP's rule) and OpenCV's for the process (tasks that run at once in
    one process are given the same budget; it goes back to its size when the last one leaves), and
    onnxruntime sessions loaded inside get that many threads, without spinning (`onnx_session_options`)."""
    import cv2
    import torch

    with _GUARD:
        if not _BUDGETS:
            _CV2_DEFAULT[:] = [cv2.getNumThreads()]
        _BUDGETS.append(threads)
        cv2.setNumThreads(threads)
    own = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(own)
        with _GUARD:
            _BUDGETS.remove(threads)
            cv2.setNumThreads(_BUDGETS[-1] if _BUDGETS else _CV2_DEFAULT[0])


def thread_budget() -> int | None:
    """The threads a model loaded now gets (None: the libraries' defaults); part of a model's
    `load_once` key, so a session made for one budget is not reused under another."""
    with _GUARD:
        return _BUDGETS[-1] if _BUDGETS else None


def onnx_session_options():
    """onnxruntime session options for the current thread budget: that many intra-op threads, one
    inter-op thread, and no spinning (an idle pool that spins takes the cores the other tasks need)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    threads = thread_budget()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options
