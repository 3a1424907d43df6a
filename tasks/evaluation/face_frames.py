"""Faces in every frame of a video being evaluated: the N largest, left to right.

Evaluation needs each identity's face in every frame (a generated or benchmark video has N
people side by side, identity i the i-th from the left, as generation binds audio tracks), and
how many faces a frame has (the interactivity metric is -1 when a frame does not have exactly
N). SCRFD's detector alone runs per frame (no recognition), on frames padded by an eighth as
in curation (it misses faces touching the edge otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.curation.analysis.faces import face_analysis, padded_for_detection


@dataclass
class FrameFaces:
    boxes: np.ndarray  # (T, N, 4) x0, y0, x1, y1 in video pixels, NaN where identity i is not found
    kps: np.ndarray  # (T, N, 5, 2) SCRFD's five keypoints
    counts: np.ndarray  # (T,) faces found in each frame (above the score threshold)

    @property
    def n(self) -> int:
        return self.boxes.shape[1]


def detect_frames(frames: np.ndarray, n: int, model: str, min_score: float = 0.5, every: int = 1) -> FrameFaces:
    """The n largest faces of every `every`-th frame (others NaN), sorted left to right by centre."""
    detector = face_analysis(model).det_model
    t_total = len(frames)
    boxes = np.full((t_total, n, 4), np.nan, np.float32)
    kps = np.full((t_total, n, 5, 2), np.nan, np.float32)
    counts = np.full(t_total, -1, np.int64)
    for t in range(0, t_total, every):
        bgr, pad, size = padded_for_detection(frames[t])
        dets, points = detector.detect(bgr, input_size=size, max_num=0)
        keep = dets[:, 4] >= min_score
        dets, points = dets[keep], points[keep]
        counts[t] = len(dets)
        if len(dets) == 0:
            continue
        largest = np.argsort(-(dets[:, 2] - dets[:, 0]) * (dets[:, 3] - dets[:, 1]))[:n]
        chosen = sorted(largest, key=lambda i: dets[i, 0] + dets[i, 2])
        if len(chosen) < n:  # fewer faces than identities: place each by its side of the frame
            slots = [min(n - 1, int((dets[i, 0] + dets[i, 2]) / 2 / frames.shape[2] * n)) for i in chosen]
        else:
            slots = list(range(n))
        for slot, i in zip(slots, chosen, strict=True):
            boxes[t, slot] = dets[i, :4] - pad
            kps[t, slot] = points[i] - pad
    return FrameFaces(boxes, kps, counts)
