"""What goes into a shard set: every sample planned up front (deterministic for a seed), then
rendered one by one. Plain functions; flows/build_shards.py orchestrates them.

Train and validation are split by identity (tasks/dataset/identities.py) and composites are grouped
within one side only, so no person appears on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from shards.schema import Sample
from tasks.config import CurateConfig
from tasks.dataset.clip_library import LibraryClip
from tasks.dataset.compose import (
    CompositePlan,
    SinglePlan,
    plan_composites,
    plan_singles,
    render_composite,
    render_single,
    span,
)
from tasks.dataset.stage2.render import plan_windows, render_multi
from tasks.dataset.stage2.ties import MultiPersonResult


@dataclass(frozen=True)
class PlannedComposite:
    """N accepted single-person clips side by side (stage 1)."""

    key: str
    split: str
    plan: CompositePlan
    kind: Literal["composite"] = "composite"


@dataclass(frozen=True)
class PlannedSingle:
    """One accepted single-person clip (stage 1)."""

    key: str
    split: str
    plan: SinglePlan
    kind: Literal["single"] = "single"


@dataclass(frozen=True)
class PlannedMulti:
    """A window of a real multi-person clip whose voices are tied to faces (stage 2)."""

    key: str
    split: str
    clip_id: str
    start: int  # first frame of the window
    kind: Literal["multi"] = "multi"


PlannedSample = PlannedComposite | PlannedSingle | PlannedMulti
KINDS = ("composite", "single", "multi")


def plan_samples(
    accepted: list[LibraryClip], stage2: dict[str, MultiPersonResult], stage2_clips: list[LibraryClip],
    sides: dict[str, str], config: CurateConfig, seed: int,
) -> list[PlannedSample]:  # fmt: skip
    """Composites and single-person samples per side, then the stage-2 windows."""
    planned: list[PlannedSample] = []
    for split in sorted(set(sides.values())):
        clips = [c for c in accepted if sides.get(c.identity) == split]
        planned += [PlannedComposite(plan.key, split, plan) for plan in plan_composites(clips, config.compose, seed)]
        planned += [PlannedSingle(plan.key, split, plan) for plan in plan_singles(clips, config.compose)]
    for clip in stage2_clips:
        if clip.clip_id in stage2:
            side = sides.get(clip.identity, "train")
            for start in plan_windows(clip.n_frames, span(clip, config.compose)):
                planned.append(PlannedMulti(f"m{clip.clip_id}_{start:05d}", side, clip.clip_id, start))
    return planned


def render_sample(
    planned: PlannedSample, clips: dict[str, LibraryClip], stage2: dict[str, MultiPersonResult], config: CurateConfig
) -> Sample:
    match planned:
        case PlannedComposite(plan=plan):
            sample = render_composite(plan, clips, config.compose)
        case PlannedSingle(plan=plan):
            sample = render_single(plan, clips[plan.clip_id], config.compose)
        case PlannedMulti(key=key, clip_id=clip_id, start=start):
            sample = render_multi(stage2[clip_id], clips[clip_id], start, config, key)
    sample.meta["split"] = planned.split
    return sample
