"""Picture quality of a clip: face resolution, sharpness, exposure and camera motion.

Sharpness is the variance of the Laplacian on the face crop, resized to a fixed height first so
that clips of different resolutions compare. Motion is the camera's: the global shift between
consecutive sampled frames by phase correlation, with the face blanked out so that a talking
head does not count as a moving camera, in frame widths per second.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tasks.curation.clipmedia import ClipMedia

FACE_HEIGHT = 128  # face crops are compared at this height
MOTION_WIDTH = 160  # frames are compared at this width for camera motion


@dataclass(frozen=True)
class Quality:
    sharpness: float
    brightness: float  # mean luma of the face crop, 0..255
    motion: float  # camera motion, frame widths per second

    def metrics(self) -> dict:
        return {"sharpness": round(self.sharpness, 1), "brightness": round(self.brightness, 1), "motion": round(self.motion, 4)}


def _face_crop(gray: np.ndarray, box: np.ndarray, scale: float) -> np.ndarray | None:
    x0, y0, x1, y1 = (box / scale).astype(int)
    h, w = gray.shape
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    crop = gray[y0:y1, x0:x1]
    return cv2.resize(crop, (max(8, int(FACE_HEIGHT * crop.shape[1] / crop.shape[0])), FACE_HEIGHT))


def analyze_quality(media: ClipMedia, boxes: np.ndarray, sample_every: int) -> Quality:
    sharp, bright = [], []
    shifts = []
    previous = None
    window = None  # the same size for every frame of a clip
    frames = range(0, len(media.frames), sample_every)
    for t in frames:
        gray = cv2.cvtColor(media.frames[t], cv2.COLOR_RGB2GRAY)
        if not np.isnan(boxes[t, 0]):
            crop = _face_crop(gray, boxes[t], media.scale)
            if crop is not None:
                sharp.append(cv2.Laplacian(crop, cv2.CV_64F).var())
                bright.append(crop.mean())
        small = gray.astype(np.float32)
        if not np.isnan(boxes[t, 0]):
            x0, y0, x1, y1 = (boxes[t] / media.scale).astype(int)
            small[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = small.mean()
        factor = MOTION_WIDTH / small.shape[1]
        small = cv2.resize(small, (MOTION_WIDTH, max(8, int(small.shape[0] * factor))))
        if previous is not None:
            if window is None:
                window = cv2.createHanningWindow(small.shape[::-1], cv2.CV_32F)
            (dx, dy), _ = cv2.phaseCorrelate(previous, small, window)
            shifts.append(np.hypot(dx, dy) / MOTION_WIDTH)
        previous = small
    per_second = media.fps / sample_every
    return Quality(
        sharpness=float(np.median(sharp)) if sharp else 0.0,
        brightness=float(np.median(bright)) if bright else float(media.frames.mean()),
        motion=float(np.mean(shifts) * per_second) if shifts else 0.0,
    )
