"""From a clip's metrics to its verdict: the first threshold it fails, in a fixed order.

Only metrics go in, so a changed threshold can be re-applied to the catalog without analysing
anything again.
"""

from __future__ import annotations

from tasks.config import VerdictConfig
from tasks.records import Reason


def sync_is_confident(metrics: dict, config: VerdictConfig) -> bool:
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


def judge(metrics: dict, config: VerdictConfig) -> Reason | None:
    """None for accepted, else the reason. Faces first (nothing else matters without one face)."""
    if metrics.get("face_coverage", 0.0) == 0.0:
        return Reason.NO_FACE
    if metrics["multi_face_ratio"] > config.max_multi_face_ratio:
        return Reason.MULTI_FACE
    if metrics["face_coverage"] < config.min_face_coverage:
        return Reason.FACE_LOST
    if metrics["face_size_px"] < config.min_face_px:
        return Reason.FACE_TOO_SMALL
    if metrics["yaw_deg"] > config.max_yaw_deg:
        return Reason.PROFILE
    if metrics["speech_ratio"] < config.min_speech_ratio:
        return Reason.NO_SPEECH
    if metrics["num_speakers"] > config.max_speakers:
        return Reason.MULTI_SPEAKER
    if judge_sync(metrics, config) is not None:
        return Reason.OUT_OF_SYNC
    if metrics["sharpness"] < config.min_sharpness:
        return Reason.BLURRY
    if metrics["brightness"] < config.min_brightness:
        return Reason.TOO_DARK
    if metrics["motion"] > config.max_motion:
        return Reason.SHAKY
    return None
