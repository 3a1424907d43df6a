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
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_LOADED: dict[tuple[str, str], object] = {}
_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_GUARD = threading.Lock()


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
