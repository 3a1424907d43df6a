"""Models are loaded once per process, on the device the task asked for where there is one."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tasks.models import (
    available_cores,
    load_once,
    loaded_models,
    model_threads,
    onnx_providers,
    onnx_session_options,
    thread_budget,
    threads_per_task,
    torch_device,
)


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


def test_tasks_that_run_at_once_share_the_cores_and_the_pools_come_back() -> None:
    """Two tasks of a local pool on the same budget: OpenCV's pool (one per process) keeps it until
    the last one leaves, torch's (one per thread) until its own task leaves, then both go back to
    their sizes; an onnxruntime session made inside gets the budget and does not spin."""
    import cv2
    import torch

    before = (torch.get_num_threads(), cv2.getNumThreads())
    assert thread_budget() is None and onnx_session_options().intra_op_num_threads == 0  # onnxruntime's default
    first_in, second_done = threading.Event(), threading.Event()
    seen: list[tuple[int, int, int | None]] = []

    def first() -> None:
        with model_threads(1):
            first_in.set()
            second_done.wait(5)
            seen.append((torch.get_num_threads(), cv2.getNumThreads(), thread_budget()))  # the other has left

    worker = threading.Thread(target=first)
    worker.start()
    first_in.wait(5)
    with model_threads(1):
        options = onnx_session_options()
        assert options.intra_op_num_threads == 1 and options.inter_op_num_threads == 1
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    second_done.set()
    worker.join()
    assert seen == [(1, 1, 1)]
    assert (torch.get_num_threads(), cv2.getNumThreads()) == before and thread_budget() is None
    assert threads_per_task(1) == available_cores() and threads_per_task(available_cores() + 1) == 1


def test_a_task_gets_its_share_of_the_cores_locally_and_its_cpus_on_ray() -> None:
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_ray import RayTaskRunner

    from flows.runners import task_threads

    assert task_threads(ThreadPoolTaskRunner(max_workers=2), 2, 1.0) == max(1, available_cores() // 2)
    assert task_threads(RayTaskRunner(address="auto"), 2, 3.5) == 3
    assert task_threads(RayTaskRunner(address="auto"), 2, 0.5) == 1


def test_the_face_models_loaded_inside_a_budget_run_on_it(shared_models: Path) -> None:
    from tasks.config import CurateConfig
    from tasks.curation.analysis.faces import face_analysis, resolve_face_models

    model = resolve_face_models(CurateConfig().faces.model)
    with model_threads(1):
        budgeted = face_analysis(model)
        assert budgeted is face_analysis(model)
    assert budgeted is not face_analysis(model)  # outside, a copy on onnxruntime's own pool
    for session in (budgeted.det_model.session, budgeted.models["recognition"].session):
        options = session.get_session_options()
        assert options.intra_op_num_threads == 1
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
