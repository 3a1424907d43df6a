"""From a clip's metrics to its verdict: the first threshold it fails, in a fixed order.

Only metrics go in, so a changed threshold can be re-applied to the catalog without analysing
anything again.
"""

from __future__ import annotations

from tasks.config import VerdictConfig
from tasks.records import Reason


def sync_is_confident(metrics: dict, config: VerdictConfig) -> bool:
    return metrics.get("sync_confidence", 0.0) >= config.min_sync_confidence


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
    if "sync_offset_frames" in metrics:
        if not sync_is_confident(metrics, config):
            if config.uncertain_sync == "reject":
                return Reason.OUT_OF_SYNC
        elif abs(metrics["sync_offset_frames"]) > config.max_sync_offset_frames:
            return Reason.OUT_OF_SYNC
    if metrics["sharpness"] < config.min_sharpness:
        return Reason.BLURRY
    if metrics["brightness"] < config.min_brightness:
        return Reason.TOO_DARK
    if metrics["motion"] > config.max_motion:
        return Reason.SHAKY
    return None
