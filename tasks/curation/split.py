"""Split a source into shots with PySceneDetect, then plan standard clips from the shots.

Detection runs on downscaled frames in one decode of the source. PySceneDetect counts frames;
the probe's packet times turn frame numbers into presentation times, so cuts land right even
when the frame rate varies or the video stream starts after the audio.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
from scenedetect import AdaptiveDetector, ContentDetector, HistogramDetector, SceneManager, open_video
from scenedetect.detector import SceneDetector

from tasks.config import SplitConfig
from tasks.records import ClipPlan, Reason, Rejected, Shot, clip_id_for

logging.getLogger("pyscenedetect").setLevel(logging.WARNING)  # one "Detecting scenes..." per source is noise


def make_detector(config: SplitConfig) -> SceneDetector:
    """The configured PySceneDetect detector."""
    if config.detector == "adaptive":
        return AdaptiveDetector(adaptive_threshold=config.adaptive_threshold, min_scene_len=config.min_scene_len_frames)
    if config.detector == "content":
        return ContentDetector(threshold=config.content_threshold, min_scene_len=config.min_scene_len_frames)
    return HistogramDetector(threshold=config.histogram_threshold, min_scene_len=config.min_scene_len_frames)


def detect_cut_frames(path: str | Path, config: SplitConfig, expected_frames: int) -> list[int]:
    """Frame numbers (0-based, in presentation order) at which a new shot starts."""
    try:
        video = open_video(str(path), backend=config.backend)
    except Exception as exc:  # scenedetect raises OSError or backend-specific errors
        raise Rejected(Reason.DECODE_ERROR, f"cannot open for detection: {exc}") from exc
    manager = SceneManager()
    if config.downscale is None:
        manager.auto_downscale = True
    else:
        manager.auto_downscale = False
        manager.downscale = config.downscale
    manager.add_detector(make_detector(config))
    decoded = manager.detect_scenes(video, show_progress=False)
    if decoded < 0.9 * expected_frames:
        raise Rejected(Reason.DECODE_ERROR, f"decoded {decoded} of {expected_frames} frames")
    starts = (int(scene[0].frame_num) for scene in manager.get_scene_list(start_in_scene=True))
    return sorted({f for f in starts if 0 < f < expected_frames})


def shots_from_cuts(cut_frames: list[int], times: np.ndarray) -> list[Shot]:
    """Shots in presentation time from cut frame numbers and the frame times."""
    gaps = np.diff(times)
    frame_s = float(np.median(gaps)) if gaps.size else 0.04
    bounds = [0, *cut_frames]
    shots = []
    for i, first in enumerate(bounds):
        start = float(times[first])
        end = float(times[bounds[i + 1]]) if i + 1 < len(bounds) else float(times[-1]) + frame_s
        shots.append(Shot(index=i, start_s=round(start, 6), end_s=round(end, 6)))
    return shots


def plan_clips(
    source_id: str, shots: list[Shot], config: SplitConfig, fps: float, offset_s: float = 0.0
) -> list[ClipPlan]:
    """One plan per clip: short shots rejected as too_short, long ones cut into equal pieces.

    Shots are in the source file's time; plans (and so clip ids) are on the original video's
    clock, `offset_s` later, so a section fetched from 6.0 s gives clips from 6.0 s on.
    """
    plans: list[ClipPlan] = []
    for shot in shots:
        if shot.length_s < config.min_clip_s:
            start, end = round(offset_s + shot.start_s, 6), round(offset_s + shot.end_s, 6)
            plans.append(
                ClipPlan(
                    clip_id_for(source_id, start, end, fps),
                    shot.index, 0, start, end, rejected=Reason.TOO_SHORT, offset_s=offset_s,
                )
            )
            continue
        pieces = max(1, math.ceil(shot.length_s / config.max_clip_s - 1e-9))
        # Whole output frames per piece, so every clip has an exact frame count at `fps`; the
        # shot's frames are shared out so that pieces differ by at most one frame.
        total = int(shot.length_s * fps + 1e-6)
        first = 0
        for k in range(pieces):
            frames = total // pieces + (1 if k < total % pieces else 0)
            start = round(offset_s + shot.start_s + first / fps, 6)
            end = round(offset_s + shot.start_s + (first + frames) / fps, 6)
            plans.append(ClipPlan(clip_id_for(source_id, start, end, fps), shot.index, k, start, end, offset_s=offset_s))
            first += frames
    return plans
