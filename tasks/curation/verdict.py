"""From a clip's metrics to its verdict: the first threshold it fails, in a fixed order.

Only metrics go in, so a changed threshold can be re-applied to the catalog without analysing
anything again.
"""

from __future__ import annotations

from tasks.config import VerdictConfig
from tasks.records import Reason


def sync_is_confident(metrics: dict, config: VerdictConfig) -> bool:
    """The weight-free estimate by its calibrated z-score; SyncNet by its own confidence."""
    if metrics.get("sync_z") is not None:
        return metrics["sync_z"] >= config.min_sync_z
    if "sync_z" in metrics:  # an estimate too short for its null: never confident
        return False
    return metrics.get("sync_confidence", 0.0) >= config.min_sync_confidence


def judge_sync(metrics: dict, config: VerdictConfig) -> Reason | None:
    """out_of_sync, or None: a confident offset beyond tolerance always; an uncertain one by policy."""
    if "sync_offset_frames" not in metrics:
        return None
    beyond = abs(metrics["sync_offset_frames"]) > config.max_sync_offset_frames
    if sync_is_confident(metrics, config):
        return Reason.OUT_OF_SYNC if beyond else None
    if config.uncertain_sync == "reject" or (config.uncertain_sync == "offset" and beyond):
        return Reason.OUT_OF_SYNC
    return None


# (metric, failing comparison, threshold field, reason), checked in this order after the face is found.
RULES: tuple[tuple[str, str, str, Reason], ...] = (
    ("multi_face_ratio", ">", "max_multi_face_ratio", Reason.MULTI_FACE),
    ("face_coverage", "<", "min_face_coverage", Reason.FACE_LOST),
    ("face_size_px", "<", "min_face_px", Reason.FACE_TOO_SMALL),
    ("yaw_deg", ">", "max_yaw_deg", Reason.PROFILE),
    ("speech_ratio", "<", "min_speech_ratio", Reason.NO_SPEECH),
    ("held_pitch", ">", "max_held_pitch", Reason.SINGING),  # where enough of the speech is voiced
    ("num_speakers", ">", "max_speakers", Reason.MULTI_SPEAKER),
    ("face_speaking", "<", "min_face_speaking", Reason.NOT_THE_SPEAKER),  # only where Light-ASD ran
    ("sharpness", "<", "min_sharpness", Reason.BLURRY),
    ("brightness", "<", "min_brightness", Reason.TOO_DARK),
    ("motion", ">", "max_motion", Reason.SHAKY),
)
SYNC_AFTER = Reason.NOT_THE_SPEAKER  # lip sync is judged once the one voice is known to be the face's
OPTIONAL = {"face_speaking", "held_pitch"}  # metrics a clip may lack (no Light-ASD weights, nothing voiced)
# rejections that make a clip a stage-2 candidate (a real multi-person clip): it keeps its speech analysis
STAGE2_REASONS = (Reason.MULTI_FACE, Reason.MULTI_SPEAKER)


def is_written(reason: Reason | None, write_rejected: bool) -> bool:
    """Whether a clip with this verdict is encoded as a standard clip: accepted clips and
    stage-2 candidates always (the shards read them), the other rejected ones on request."""
    return reason is None or reason in STAGE2_REASONS or write_rejected


def judge(metrics: dict, config: VerdictConfig) -> Reason | None:
    """None for accepted, else the reason. Faces first (nothing else matters without one face)."""
    return _first_failure(metrics, config, partial=False)


def early_rejection(metrics: dict, config: VerdictConfig) -> Reason | None:
    """The reason a clip fails on the metrics measured so far, or None while it may still pass.

    The rules are walked in `judge`'s order and the walk stops at the first metric not measured
    yet, and before lip sync: a reason found here is the reason `judge` gives once every metric
    is in, so the analysis can stop paying for later stages (cheap checks first) without
    changing a verdict."""
    return _first_failure(metrics, config, partial=True)


def _first_failure(metrics: dict, config: VerdictConfig, partial: bool) -> Reason | None:
    if metrics.get("face_coverage", 0.0) == 0.0:
        return Reason.NO_FACE
    for key, op, field, reason in RULES:
        if partial and key not in OPTIONAL and key not in metrics:
            return None
        limit = getattr(config, field)
        value = metrics.get(key) if key in OPTIONAL else metrics[key]
        if value is not None and (value > limit if op == ">" else value < limit):
            return reason
        if reason is SYNC_AFTER:
            if partial:
                return None
            if judge_sync(metrics, config) is not None:
                return Reason.OUT_OF_SYNC
    return None
