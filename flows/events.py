"""The events our flows emit, which chain the deployments (prefect.yaml's triggers):

- `anytalker.curation.updated`: a curate run wrote new clips into a work directory, so its
  shard set is out of date (triggers build-shards on that work directory);
- `anytalker.shards.published`: build_shards wrote a new shard set (triggers train on it);
- `anytalker.training.finished`: a training run wrote its model (triggers evaluate on it);
- `anytalker.model.promoted`: an evaluated run beat the incumbent and is now RUNS/best.

A run that finds nothing new emits nothing, so a nightly schedule never retrains on the same data.
"""

from __future__ import annotations

import hashlib

from prefect.events import emit_event

CURATION_UPDATED = "anytalker.curation.updated"
SHARDS_PUBLISHED = "anytalker.shards.published"
TRAINING_FINISHED = "anytalker.training.finished"
MODEL_PROMOTED = "anytalker.model.promoted"


def _resource(kind: str, location: str) -> dict[str, str]:
    """A stable resource id per location (a hash: ids stay short and free of URL characters)."""
    digest = hashlib.sha256(location.encode()).hexdigest()[:16]
    return {"prefect.resource.id": f"anytalker.{kind}.{digest}", "prefect.resource.name": location}


def curation_updated(workdir: str, new_clips: int, counts: dict) -> None:
    emit_event(
        event=CURATION_UPDATED,
        resource=_resource("workdir", workdir),
        payload={"workdir": workdir, "new_clips": new_clips, "accepted": counts["accepted"],
                 "clips": counts["clips"]},
    )  # fmt: skip


def shards_published(shards: str, set_id: str, written: int, samples: dict[str, int]) -> None:
    emit_event(
        event=SHARDS_PUBLISHED,
        resource=_resource("shard-set", shards),
        payload={"shards": shards, "set_id": set_id, "written": written, "samples": samples},
    )


def training_finished(run: str, step: int, shards: str) -> None:
    emit_event(
        event=TRAINING_FINISHED,
        resource=_resource("run", run),
        payload={"run": run, "step": step, "shards": shards},
    )


def model_promoted(run: str, step: int, benchmark: str, reason: str, metrics: dict) -> None:
    emit_event(
        event=MODEL_PROMOTED,
        resource=_resource("run", run),
        payload={"run": run, "step": step, "benchmark": benchmark, "reason": reason, "metrics": metrics},
    )
