"""The train flow: launch (or resume) a training run on Ray and publish what it produced.

Artifacts: `training-run` (run folder, checkpoint, model folder, whether and from where it
resumed, final metrics) and `training-curve` (the loss over steps, every launch of the run).
"""

from __future__ import annotations

import io
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from flows.reporting import _image_markdown
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
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


@flow(name="train", log_prints=True, persist_result=False)
def train(
    shards: str, config_path: str, out: str, workers: int = 2, gpus_per_worker: float = 0, max_steps: int = 100,
    strategy: str = "ddp",
) -> dict:  # fmt: skip
    """Train the identity-aware DiT on `shards` with the YAML `config_path` into the run folder `out`."""
    logger = get_run_logger()
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
    return result
