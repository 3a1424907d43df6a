"""Lips and eyes per frame: MediaPipe Face Landmarker on the main face's crop in every frame.

Gives what the weight-free sync estimate needs: the mouth opening (inner-lip gap over mouth
width, and the jawOpen blendshape) and the lip motion (how far the lip contour moved since the
previous frame, in mouth widths); and 22 eye and eyebrow points per frame that the
interactivity metric needs later. One landmarker per thread (MediaPipe graphs are not shared).
"""

from __future__ import annotations

import atexit
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tasks.curation.clipmedia import ClipMedia
from tasks.models import ModelsMissing

LANDMARKER_ENV = "ANYTALKER_FACE_LANDMARKER"
LANDMARKER_URL = (
    "https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/face_landmarker.task"
)
CROP = 256
# MediaPipe's 478-point mesh: inner lips, mouth corners, and per side 6 eye-contour + 5 brow points.
UPPER_INNER, LOWER_INNER, MOUTH_LEFT, MOUTH_RIGHT = 13, 14, 78, 308
# The 40 points of the outer and inner lip contours.
LIP_POINTS = [0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185, 191, 267, 269, 270,
              291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415]  # fmt: skip
EYE_POINTS = [33, 160, 158, 133, 153, 144, 70, 63, 105, 66, 107, 362, 385, 387, 263, 373, 380, 300, 293, 334, 296, 336]

_local = threading.local()
_ALL: list = []  # every landmarker made, closed at exit while MediaPipe can still close them


@atexit.register
def _close_all() -> None:
    while _ALL:
        _ALL.pop().close()


def resolve_landmarker(configured: str) -> Path:
    """The landmarker file; fetched once from MediaPipe's model store when missing and reachable."""
    path = Path(os.environ.get(LANDMARKER_ENV) or configured).expanduser()
    if not path.is_file():
        _try_download(path)
    if not path.is_file():
        raise ModelsMissing(
            f"face landmarker not found: {path}. Download face_landmarker.task from MediaPipe's model page "
            f"(Face Landmarker, float16) and name it in faces.landmarker or {LANDMARKER_ENV}."
        )
    return path


def _try_download(path: Path) -> None:
    """Best effort, like insightface's own pack download: a machine without internet gets the clear error."""
    import urllib.request

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.part")
        with urllib.request.urlopen(LANDMARKER_URL, timeout=20) as response, open(temp, "wb") as out:
            out.write(response.read())
        temp.replace(path)
    except OSError:
        return


def _landmarker(path: Path):
    cache = getattr(_local, "landmarkers", None)
    if cache is None:
        cache = _local.landmarkers = {}
    if path not in cache:
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(path)),
            running_mode=vision.RunningMode.IMAGE,
            num_faces=1,
            output_face_blendshapes=True,
        )
        cache[path] = vision.FaceLandmarker.create_from_options(options)
        _ALL.append(cache[path])
    return cache[path]


@dataclass
class Landmarks:
    mouth_open: np.ndarray  # (T,) inner-lip gap / mouth width, NaN where not found
    jaw_open: np.ndarray  # (T,) MediaPipe jawOpen blendshape, 0..1
    lip_motion: np.ndarray  # (T,) summed displacement of the lip contour since the previous frame, mouth widths
    eye_points: np.ndarray  # (T, 22, 2) clip pixels

    @property
    def found_ratio(self) -> float:
        return float(np.mean(~np.isnan(self.jaw_open))) if self.jaw_open.size else 0.0


def _square_crop(box: np.ndarray, scale: float) -> tuple[int, int, int]:
    """A square around a box (analysis pixels), 1.6x its larger side: x0, y0, side."""
    x0, y0, x1, y1 = box / scale
    side = int(1.6 * max(x1 - x0, y1 - y0))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return int(cx - side / 2), int(cy - side / 2), max(side, 8)


def _cut(frame: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """frame[y0 : y0 + side, x0 : x0 + side], black where the square leaves the frame (only the
    square is padded: padding the whole frame first cost a tenth of the landmark stage)."""
    h, w = frame.shape[:2]
    inside = frame[max(0, y0) : min(h, y0 + side), max(0, x0) : min(w, x0 + side)]
    if inside.size == 0:
        return np.zeros((side, side, frame.shape[2]), frame.dtype)
    top, left = max(0, -y0), max(0, -x0)
    bottom, right = side - top - inside.shape[0], side - left - inside.shape[1]
    return cv2.copyMakeBorder(inside, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(0, 0, 0))


def analyze_landmarks(media: ClipMedia, boxes: np.ndarray, landmarker: Path) -> Landmarks:
    import mediapipe as mp

    model = _landmarker(landmarker)
    n = len(media.frames)
    mouth = np.full(n, np.nan, np.float32)
    jaw = np.full(n, np.nan, np.float32)
    eyes = np.full((n, len(EYE_POINTS), 2), np.nan, np.float32)
    lips = np.full((n, len(LIP_POINTS), 2), np.nan, np.float32)
    for t in range(n):
        if np.isnan(boxes[t, 0]):
            continue
        x0, y0, side = _square_crop(boxes[t], media.scale)
        crop = np.ascontiguousarray(cv2.resize(_cut(media.frames[t], x0, y0, side), (CROP, CROP),
                                               interpolation=cv2.INTER_LINEAR))  # fmt: skip
        result = model.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=crop))
        if not result.face_landmarks:
            continue
        pts = np.array([(p.x, p.y) for p in result.face_landmarks[0]], np.float32) * CROP
        width = np.linalg.norm(pts[MOUTH_RIGHT] - pts[MOUTH_LEFT])
        mouth[t] = np.linalg.norm(pts[LOWER_INNER] - pts[UPPER_INNER]) / max(width, 1e-6)
        lips[t] = (pts[LIP_POINTS] - (pts[MOUTH_LEFT] + pts[MOUTH_RIGHT]) / 2) / max(width, 1e-6)
        jaw[t] = next((c.score for c in result.face_blendshapes[0] if c.category_name == "jawOpen"), np.nan)
        eyes[t] = (pts[EYE_POINTS] * side / CROP + (x0, y0)) * media.scale
    return Landmarks(mouth, jaw, lip_motion(lips), eyes)


def fill_gaps(x: np.ndarray) -> np.ndarray:
    """A per-frame signal with its NaN frames linearly interpolated (all zeros when nothing was found)."""
    ok = ~np.isnan(x)
    if not ok.any():
        return np.zeros_like(x)
    return np.interp(np.arange(len(x)), np.flatnonzero(ok), x[ok])


def lip_motion(lips: np.ndarray) -> np.ndarray:
    """Per frame, the summed distance the (T, P, 2) mouth-centred lip points moved since the frame before.

    Frames without landmarks are bridged by interpolating each coordinate, so a missed frame does
    not read as a jump; where no frame has landmarks the result is all NaN.
    """
    n = len(lips)
    flat = lips.reshape(n, -1).astype(np.float64)
    if np.isnan(flat[:, 0]).all():
        return np.full(n, np.nan, np.float32)
    filled = np.stack([fill_gaps(col) for col in flat.T], 1)
    steps = np.diff(filled, axis=0, prepend=filled[:1]).reshape(n, -1, 2)
    return np.linalg.norm(steps, axis=2).sum(1).astype(np.float32)
