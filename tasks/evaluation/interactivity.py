"""AnyTalker's interactivity metric, for N identities: how much each listener's eyes and brows
move while that person is silent (../shared/anytalker/README.md, "Their interactivity metric").

Per identity (left to right): a square crop as large as that identity's largest box over the
video (at least 224 px), its centre smoothed by an EMA of 0.7; landmarks on the crop rescaled to
224; a frame whose crop centre or mean landmark moves more than 10 px is an outlier and keeps
the last stable values. Per frame, the mean L2 displacement of 22 eye and eyebrow points since
the previous frame, counted only where the identity is NOT speaking, each frame weighted 1/fps;
the score is the time-weighted mean over identities. -1 when any frame does not have exactly N
faces (their rule, for two).

Landmarks: the official points are insightface's 106-point model (brows 43 48 49 51 50 and
102 103 104 105 101, eyes 35 41 42 39 37 36 and 89 95 96 93 91 90). Where that model is absent
(it is not available on the project's machines) MediaPipe's 478-point mesh gives the same
anatomical points: per side the 5 brow points 70 63 105 66 107 / 300 293 334 296 336 and the 6
eye-contour points 33 160 158 133 153 144 / 362 385 387 263 373 380 (tasks/curation/analysis/landmarks.py
EYE_POINTS). The score is a mean displacement in 224-px crop pixels, so the figures are on a
comparable but NOT the official scale: the two models place the points differently.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tasks.curation.analysis.landmarks import EYE_POINTS, _landmarker
from tasks.evaluation.benchmark import speaking_mask
from tasks.evaluation.face_frames import FrameFaces

CROP = 224
EMA = 0.7
OUTLIER_PX = 10.0


@dataclass(frozen=True)
class Interactivity:
    score: float  # -1 when a frame does not have exactly N faces
    per_identity: list[float | None]  # mean displacement per silent second; None when never silent
    landmarks: str  # "insightface-106" (the official points) or "mediapipe-478" (not the official scale)
    reason: str = ""


def _crop(frame: np.ndarray, cx: float, cy: float, side: int) -> np.ndarray:
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    pad = cv2.copyMakeBorder(frame, side, side, side, side, cv2.BORDER_CONSTANT)
    crop = pad[y0 + side : y0 + 2 * side, x0 + side : x0 + 2 * side]
    return np.ascontiguousarray(
        cv2.resize(crop, (CROP, CROP), interpolation=cv2.INTER_AREA if side > CROP else cv2.INTER_LINEAR)
    )


# The 22 points in insightface's 106-point layout (their metric's own indices).
POINTS_106 = [43, 48, 49, 51, 50, 102, 103, 104, 105, 101, 35, 41, 42, 39, 37, 36, 89, 95, 96, 93, 91, 90]


def eye_points_mediapipe(crop: np.ndarray, landmarker: Path) -> np.ndarray | None:
    """The 22 eye and brow points of the face in a 224-px crop, crop pixels; None when not found."""
    import mediapipe as mp

    result = _landmarker(landmarker).detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=crop))
    if not result.face_landmarks:
        return None
    pts = np.array([(p.x, p.y) for p in result.face_landmarks[0]], np.float32) * CROP
    return pts[EYE_POINTS]


def eye_points_106(crop: np.ndarray, box: np.ndarray, model) -> np.ndarray:
    """The official 22 points from insightface's 2d106det on the crop, around the face's box (crop pixels)."""
    from insightface.app.common import Face

    face = Face(bbox=box.astype(np.float32))
    model.get(np.ascontiguousarray(crop[..., ::-1]), face)  # BGR, as insightface's models take
    return face["landmark_2d_106"][POINTS_106].astype(np.float32)


def identity_motion(frames: np.ndarray, boxes: np.ndarray, landmarker: Path, model_106=None) -> np.ndarray:
    """(T,) per-frame mean displacement of the 22 points of one identity (frame 0: 0), 224-px units."""
    found = ~np.isnan(boxes[:, 0])
    if not found.any():
        return np.full(len(frames), np.nan)
    side = max(CROP, int(np.nanmax(np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]))))
    centre = None
    last_pts, last_centre = None, None
    motion = np.zeros(len(frames))
    for t in range(len(frames)):
        if found[t]:
            c = np.array([(boxes[t, 0] + boxes[t, 2]) / 2, (boxes[t, 1] + boxes[t, 3]) / 2])
            centre = c if centre is None else EMA * centre + (1 - EMA) * c
        if centre is None:
            continue
        crop = _crop(frames[t], centre[0], centre[1], side)
        if model_106 is not None:
            box = boxes[t] if found[t] else boxes[np.flatnonzero(found)[0]]
            origin = centre - side / 2
            pts = eye_points_106(crop, (box - np.tile(origin, 2)) * CROP / side, model_106)
        else:
            pts = eye_points_mediapipe(crop, landmarker)
        if pts is None:
            continue
        if last_pts is not None:
            jump_centre = np.linalg.norm(centre - last_centre) * CROP / side
            jump_mean = np.linalg.norm(pts.mean(0) - last_pts.mean(0))
            if jump_centre > OUTLIER_PX or jump_mean > OUTLIER_PX:
                continue  # an outlier keeps the last stable values: no motion counted
            motion[t] = float(np.linalg.norm(pts - last_pts, axis=1).mean())
        last_pts, last_centre = pts, centre.copy()
    return motion


def landmarks_106(face_model: str | None):
    """insightface's 2d106det when the face model folder or pack holds it, else None."""
    if face_model is None:
        return None
    from tasks.curation.analysis.faces import face_analysis

    return face_analysis(face_model).models.get("landmark_2d_106")


def interactivity(frames: np.ndarray, fps: float, faces: FrameFaces, speaking: list, landmarker: Path | None,
                  face_model: str | None = None) -> Interactivity:  # fmt: skip
    """The score over N identities; `speaking` holds per identity its intervals in seconds.
    The official 106 points when `face_model` holds insightface's 2d106det, else MediaPipe's."""
    n = faces.n
    model_106 = landmarks_106(face_model)
    kind = "insightface-106" if model_106 is not None else "mediapipe-478"
    if model_106 is None and landmarker is None:
        raise ValueError("interactivity needs insightface's 2d106det in the face models or MediaPipe's landmarker")
    if (faces.counts != n).any():
        bad = int(np.flatnonzero(faces.counts != n)[0])
        return Interactivity(-1.0, [None] * n, kind, f"frame {bad} has {faces.counts[bad]} faces, not {n}")
    total, seconds, per = 0.0, 0.0, []
    for i in range(n):
        silent = ~speaking_mask(speaking[i], len(frames), fps)
        motion = identity_motion(frames, faces.boxes[:, i], landmarker, model_106)
        weight = silent / fps
        if weight.sum() == 0:
            per.append(None)
            continue
        moved = float(np.nansum(motion * weight))
        per.append(moved / float(weight.sum()))
        total, seconds = total + moved, seconds + float(weight.sum())
    score = total / seconds if seconds else 0.0
    return Interactivity(score, per, kind)
