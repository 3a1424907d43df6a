"""What goes into a shard set: every sample planned up front (deterministic for a seed), then
rendered one by one. Plain functions; flows/build_shards.py orchestrates them.

Train and validation are split by identity (tasks/identities.py) and composites are grouped
within one side only, so no person appears on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

from shards.schema import Sample
from tasks.clip_library import LibraryClip
from tasks.compose import (
    CompositePlan,
    SinglePlan,
    plan_composites,
    plan_singles,
    render_composite,
    render_single,
    span,
)
from tasks.config import CurateConfig
from tasks.stage2.render import plan_windows, render_multi
from tasks.stage2.ties import MultiPersonResult


@dataclass(frozen=True)
class PlannedSample:
    key: str
    split: str
    kind: str  # composite | single | multi
    composite: CompositePlan | None = None
    single: SinglePlan | None = None
    clip_id: str | None = None  # a multi sample's clip
    start: int = 0  # a multi sample's first frame


def plan_samples(
    accepted: list[LibraryClip], stage2: dict[str, MultiPersonResult], stage2_clips: list[LibraryClip],
    sides: dict[str, str], config: CurateConfig, seed: int,
) -> list[PlannedSample]:  # fmt: skip
    """Composites and single-person samples per side, then the stage-2 windows."""
    planned: list[PlannedSample] = []
    for split in sorted(set(sides.values())):
        clips = [c for c in accepted if sides.get(c.identity) == split]
        for plan in plan_composites(clips, config.compose, seed):
            planned.append(PlannedSample(plan.key, split, "composite", composite=plan))
        for plan in plan_singles(clips, config.compose):
            planned.append(PlannedSample(plan.key, split, "single", single=plan))
    for clip in stage2_clips:
        if clip.clip_id in stage2:
            for start in plan_windows(clip.n_frames, span(clip, config.compose)):
                key = f"m{clip.clip_id}_{start:05d}"
                planned.append(PlannedSample(key, sides.get(clip.identity, "train"), "multi", clip_id=clip.clip_id, start=start))
    return planned


def render_sample(
    planned: PlannedSample, clips: dict[str, LibraryClip], stage2: dict[str, MultiPersonResult], config: CurateConfig
) -> Sample:
    if planned.kind == "composite":
        sample = render_composite(planned.composite, clips, config.compose)
    elif planned.kind == "single":
        sample = render_single(planned.single, clips[planned.single.clip_id], config.compose)
    else:
        clip = clips[planned.clip_id]
        sample = render_multi(stage2[planned.clip_id], clip, planned.start, config, planned.key)
    sample.meta["split"] = planned.split
    return sample
