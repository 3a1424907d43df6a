"""Models are loaded once per process, on the device the task asked for where there is one."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tasks.models import load_once, loaded_models, onnx_providers, torch_device


def test_a_model_is_made_once_however_many_threads_ask() -> None:
    made: list[str] = []
    slow_started = threading.Event()

    def make(name: str, wait: bool):
        def build() -> object:
            made.append(name)
            if wait:
                slow_started.set()
                time.sleep(0.3)  # a slow load: the other threads asking for it wait for this one
            return object()

        return build

    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(load_once("test", "slow", make("slow", True))))
               for _ in range(8)]  # fmt: skip
    for t in threads:
        t.start()
    slow_started.wait(5)
    other = load_once("test", "other", make("other", False))  # not held up behind the slow one's lock
    assert got == []  # every thread asking for the slow model is still waiting for its one load
    for t in threads:
        t.join()
    assert made.count("slow") == 1 and made.count("other") == 1
    assert len({id(g) for g in got}) == 1 and other is load_once("test", "other", make("again", False))
    assert ("test", "slow") in loaded_models() and "again" not in made


def test_the_device_follows_the_task_and_falls_back_to_the_cpu() -> None:
    assert onnx_providers(0.0, ["CUDAExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert onnx_providers(1.0, ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "CUDAExecutionProvider", "CPUExecutionProvider"]  # fmt: skip
    assert onnx_providers(1.0, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    import onnxruntime
    import torch

    # this machine's builds: a task that asks for a GPU still runs where none is
    expected = "CUDAExecutionProvider" if "CUDAExecutionProvider" in onnxruntime.get_available_providers() else \
        "CPUExecutionProvider"  # fmt: skip
    assert onnx_providers(1.0)[0] == expected
    assert torch_device(1.0) == ("cuda" if torch.cuda.is_available() else "cpu") and torch_device(0.0) == "cpu"


def test_the_face_models_load_on_the_providers_asked_for(shared_models: Path) -> None:
    from tasks.config import CurateConfig
    from tasks.curation.analysis.faces import face_analysis, resolve_face_models

    model = resolve_face_models(CurateConfig().faces.model)
    on_cpu = face_analysis(model, 0.0)
    assert on_cpu is face_analysis(model, 0.0)
    assert on_cpu.det_model.session.get_providers() == ["CPUExecutionProvider"]
    asked = face_analysis(model, 1.0)
    assert asked.det_model.session.get_providers()[0] == onnx_providers(1.0)[0]
