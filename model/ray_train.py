"""Training on Ray Train: Lightning inside `TorchTrainer` workers (RayDDPStrategy, or FSDP),
with `RayLightningEnvironment`, `RayTrainReportCallback`, a storage path and a failure policy.

A run lives in one folder (OUT): `checkpoints/` (Lightning checkpoints every
`train.checkpoint_every` steps and `last.ckpt`), `logs/version_K/metrics.csv` (train/loss per step, val/loss per check; one version per
launch; `tensorboard/` the same for TensorBoard), `ray/`
(Ray Train's own results and reported checkpoints), `prompts/` (the cached prompt embeddings)
and, at the end, `model/` (a model folder: `transformer/`, `adapter/`, `anytalker.yaml`, which
`anytalker generate --model` reads) and `metrics.json`. Running the same command
again resumes from `checkpoints/last.ckpt` (model, optimizer, scheduler and step) and says so
in its log; the data stream restarts from a new resampling seed, since resampled WebDataset
shards have no position to restore.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger("anytalker.train")


def latest_checkpoint(out: Path) -> Path | None:
    last = out / "checkpoints" / "last.ckpt"
    return last if last.is_file() else None


def train_loop(cfg: dict) -> None:
    """One Ray Train worker: a Lightning Trainer on its share of the shards."""
    import lightning as L
    import ray.train
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from ray.train.lightning import (
        RayDDPStrategy,
        RayFSDPStrategy,
        RayLightningEnvironment,
        RayTrainReportCallback,
        prepare_trainer,
    )  # fmt: skip

    from model.config import RunConfig
    from model.data import ShardDataModule
    from model.flow_matching import TalkingVideoModule

    config = RunConfig.model_validate(cfg["config"])
    out = Path(cfg["out"])
    rank = ray.train.get_context().get_world_rank()
    gpu = cfg["gpus_per_worker"] > 0 and torch.cuda.is_available()
    module = TalkingVideoModule(cfg["config"], cfg["prompt_cache"])
    data = ShardDataModule(cfg["shards"], config.data, config.train.checkpoint_every, module.model.patch_size[1:])
    validate = config.train.val_batches > 0 and data.has_val()
    every = ModelCheckpoint(dirpath=out / "checkpoints", filename="step-{step:06d}", auto_insert_metric_name=False,
                            every_n_train_steps=config.train.checkpoint_every, save_top_k=-1, save_last=True)  # fmt: skip
    trainer = L.Trainer(
        max_steps=cfg["max_steps"],
        accelerator="gpu" if gpu else "cpu",
        devices="auto",
        strategy=RayFSDPStrategy() if cfg["strategy"] == "fsdp" else RayDDPStrategy(find_unused_parameters=True),
        plugins=[RayLightningEnvironment()],
        callbacks=[every, RayTrainReportCallback()],
        precision=config.train.precision if gpu else "32-true",
        gradient_clip_val=config.train.grad_clip,
        logger=[CSVLogger(out, name="logs", flush_logs_every_n_steps=5), TensorBoardLogger(out, name="tensorboard")],  # a version per launch
        enable_progress_bar=rank == 0,
        log_every_n_steps=1,
        limit_val_batches=config.train.val_batches if validate else 0,
        num_sanity_val_steps=0,
    )
    trainer = prepare_trainer(trainer)
    resume = latest_checkpoint(out)
    if resume is not None and rank == 0:
        step = torch.load(resume, map_location="cpu", weights_only=False)["global_step"]
        print(f"resumed from step {step} ({resume})", flush=True)
    trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resume else None)
    if rank == 0:
        from model.folder import save_model_folder

        save_model_folder(module.model, config.model, out / "model")
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        (out / "metrics.json").write_text(json.dumps({"step": trainer.global_step, **metrics}, indent=1))


def launch(
    shards: str, config_path: str, out: str, workers: int = 2, gpus_per_worker: float = 0, max_steps: int = 100,
    strategy: str = "ddp", max_failures: int = 0,
) -> dict:  # fmt: skip
    """Run (or resume) a training run on the Ray cluster in RAY_ADDRESS, else a local one on loopback."""
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from model.config import load_run_config
    from model.data import check_shard_set

    config = load_run_config(config_path)
    check_shard_set(shards, config.model.fps, config.data.frames)
    run = Path(out).resolve()
    run.mkdir(parents=True, exist_ok=True)
    resume = latest_checkpoint(run)
    log.info("run %s: %s", run, f"resuming from {resume}" if resume else "starting")
    from model.text import prompt_embeddings

    prompt_cache = run / "prompts"
    prompt_embeddings(config.model, prompt_cache)  # umT5 runs here, once, not in every worker
    if not ray.is_initialized():
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # local listeners on 127.0.0.1
        address = os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address)
        else:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            import tempfile

            ray.init(num_cpus=max(2, workers), object_store_memory=256 * 1024**2, include_dashboard=False,
                     _temp_dir=tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # fmt: skip
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"config": config.model_dump(mode="json"), "shards": str(shards), "out": str(run),
                           "max_steps": max_steps, "gpus_per_worker": gpus_per_worker, "strategy": strategy,
                           "prompt_cache": str(prompt_cache)},  # fmt: skip
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus_per_worker > 0,
                                     resources_per_worker={"CPU": 1, **({"GPU": gpus_per_worker} if gpus_per_worker else {})}),  # fmt: skip
        run_config=RunConfig(name="ray", storage_path=str(run), failure_config=FailureConfig(max_failures=max_failures)),
    )
    trainer.fit()
    metrics = json.loads((run / "metrics.json").read_text())
    return {"run": str(run), "model": str(run / "model"), "checkpoint": str(latest_checkpoint(run)),
            "resumed_from": str(resume) if resume else None, "metrics": metrics}  # fmt: skip


def loss_curve(out: str | Path) -> list[tuple[int, float]]:
    """(step, loss) over every launch of a run, later launches winning where steps repeat."""
    import csv

    points: dict[int, float] = {}
    for metrics in sorted(Path(out, "logs").glob("version_*/metrics.csv"), key=lambda p: int(p.parent.name.split("_")[1])):
        with open(metrics, newline="") as fh:
            for row in csv.DictReader(fh):
                if row.get("train/loss"):
                    points[int(row["step"])] = float(row["train/loss"])
    return sorted(points.items())
