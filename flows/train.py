"""The train flow: launch (or resume) a training run on Ray and publish what it produced.

Artifacts: `training-run` (run folder, checkpoint, model folder, whether and from where it
resumed, final metrics) and `training-curve` (the loss over steps, every launch of the run).
A finished run emits `anytalker.training.finished` (the evaluate deployment's trigger).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from flows.events import training_finished
from flows.reporting import _image_markdown, figure_png
from model.ray_train import launch, loss_curve


def _curve_png(points: list[tuple[int, float]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    if points:
        steps, losses = zip(*points, strict=True)
        ax.plot(steps, losses, lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("flow-matching loss")
    ax.grid(alpha=0.3)
    return figure_png(fig)


def run_folder(shards: str, out: str | None, runs_root: str | None) -> str:
    """`out`, else a folder under `runs_root` named after the shard set, so a retrain on a new
    set starts a new run and the same set again resumes its run."""
    if out:
        return out
    if not runs_root:
        raise ValueError("train needs `out` (the run folder) or `runs_root` (a folder of runs)")
    return str(Path(runs_root) / shards.rstrip("/").rsplit("/", 1)[-1])


@contextmanager
def training_progress(out: str, max_steps: int, every_s: float = 5.0) -> Iterator[None]:
    """A `training-progress` artifact (steps done of max_steps, from the run's metrics.csv),
    updated while the Ray run trains: the workers log, this thread only reads their log."""
    artifact = create_progress_artifact(progress=0.0, key="training-progress", description="Steps done, in percent")
    stop = threading.Event()

    def percent() -> float:
        points = loss_curve(out)  # logged steps count from 0
        return min(100.0, 100.0 * (points[-1][0] + 1 if points else 0) / max(max_steps, 1))

    def watch() -> None:
        last = -1.0
        while not stop.wait(every_s):
            if (now := percent()) != last:
                update_progress_artifact(artifact, progress=now)
                last = now

    thread = threading.Thread(target=watch, name="training-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        update_progress_artifact(artifact, progress=percent())


@flow(name="train", log_prints=True, persist_result=False)
def train(
    shards: str, config_path: str, out: str | None = None, workers: int = 2, gpus_per_worker: float = 0,
    max_steps: int = 100, strategy: str = "ddp", runs_root: str | None = None,
) -> dict:  # fmt: skip
    """Train the identity-aware DiT on `shards` with the YAML `config_path` into the run folder
    `out` (or `runs_root/<shard set name>`); the same folder again resumes."""
    logger = get_run_logger()
    out = run_folder(shards, out, runs_root)
    with training_progress(out, max_steps):
        result = launch(shards, config_path, out, workers, gpus_per_worker, max_steps, strategy)
    if result["resumed_from"]:
        logger.info("resumed from %s", result["resumed_from"])
    rows = [{"key": k, "value": str(v)} for k, v in result.items() if k != "metrics"]
    rows += [{"key": k, "value": f"{v:.5g}" if isinstance(v, float) else str(v)} for k, v in result["metrics"].items()]
    create_table_artifact(key="training-run", table=rows, description="Checkpoint, model and final metrics")
    png = _curve_png(loss_curve(out))
    Path(out, "loss.png").write_bytes(png)
    create_markdown_artifact(key="training-curve", markdown=_image_markdown("Training loss", png),
                             description="Loss over steps")  # fmt: skip
    logger.info("trained to step %s: %s", result["metrics"].get("step"), result["model"])
    training_finished(str(Path(out).resolve()), int(result["metrics"].get("step", max_steps)), shards)
    return result
