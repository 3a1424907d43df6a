"""Faces: insightface detection and identity embeddings on sampled frames, tracks, per-frame boxes.

Detection runs on frames sampled at `faces.sample_fps` only; faces are tied across samples into
tracks by box overlap, with the identity embedding deciding when boxes do not overlap (a quick
turn, a detection miss). The main track is the longest; its boxes are interpolated to every
frame at the clip's rate, because composites and masks need a box in every frame.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tasks.curation.clipmedia import ClipMedia
from tasks.models import ModelsMissing, load_once, onnx_providers, onnx_session_options, thread_budget

MODELS_ENV = "ANYTALKER_FACE_MODELS"
DETECT_MAX_SIDE = 640  # SCRFD's input is at most this large (insightface's default det_size)
STRIDE = 32  # SCRFD's largest feature stride: its input sides are multiples of it


def resolve_face_models(configured: str) -> str:
    """The insightface model folder (or pack name) to load: the environment wins over the config."""
    return os.environ.get(MODELS_ENV) or configured


def face_analysis(model: str, gpus: float = 0.0):
    """insightface FaceAnalysis for a model folder or pack name, loaded once per process (on the
    GPU when the task has one and onnxruntime-gpu is installed, on the task's thread budget:
    `tasks.models`).

    A folder must hold an SCRFD detector and a recognition model (ONNX); a pack name such as
    `buffalo_l` is looked up (and, with internet, downloaded) in ~/.insightface/models.
    """
    providers = onnx_providers(gpus)
    key = f"{model} on {providers[0]}, {thread_budget() or 'default'} threads"
    return load_once("faces", key, lambda: _load_face_analysis(model, providers))


def _load_face_analysis(model: str, providers: list[str]):
    from insightface.app import FaceAnalysis

    folder = Path(model).expanduser()
    looks_like_path = os.sep in model or model.startswith(".")
    if looks_like_path and not folder.is_dir():
        raise ModelsMissing(
            f"face model folder not found: {folder}. Put an SCRFD detector (e.g. scrfd_2.5g_bnkps.onnx) and a "
            f"recognition model (e.g. w600k_r50.onnx or mobilefacenet.onnx) in it, or name an insightface pack "
            f"such as 'buffalo_l' (downloaded to ~/.insightface/models on a machine with internet), via "
            f"faces.model in the config or {MODELS_ENV}."
        )
    try:
        app = FaceAnalysis(
            name=str(folder) if looks_like_path else model,
            allowed_modules=["detection", "recognition", "landmark_2d_106"],
            providers=providers,
            sess_options=onnx_session_options(),
        )
    except Exception as exc:
        raise ModelsMissing(f"cannot load face models '{model}': {exc}. Set faces.model or {MODELS_ENV}.") from exc
    if "detection" not in app.models or "recognition" not in app.models:
        raise ModelsMissing(f"{model}: needs a face detector and a recognition model, found {sorted(app.models)}")
    if not app.det_model.use_kps:
        raise ModelsMissing(f"{model}: its face detector gives no keypoints; an SCRFD *_kps model is needed")
    app.prepare(ctx_id=0 if providers[0] == "CUDAExecutionProvider" else -1,
                det_size=(DETECT_MAX_SIDE, DETECT_MAX_SIDE))  # fmt: skip
    return app


@dataclass
class Detection:
    sample: int  # index of the sampled frame
    frame: int  # frame index in the clip
    box: np.ndarray  # x0, y0, x1, y1 in clip pixels
    kps: np.ndarray  # 5 x 2 in clip pixels
    score: float
    embedding: np.ndarray  # L2-normalised

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])


@dataclass
class Track:
    detections: list[Detection] = field(default_factory=list)

    @property
    def last(self) -> Detection:
        return self.detections[-1]

    def mean_embedding(self) -> np.ndarray:
        mean = np.mean([d.embedding for d in self.detections], axis=0)
        return mean / (np.linalg.norm(mean) + 1e-9)


@dataclass
class FaceSummary:
    """Per-clip face facts; the arrays are per frame at the clip's rate, NaN where the face is lost."""

    n_samples: int
    face_count_max: int
    multi_face_ratio: float  # sampled frames with two or more significant faces
    coverage: float  # sampled frames in which the main track was found
    face_size_px: float  # median height of the main face box, clip pixels
    yaw_deg: float  # median absolute yaw of the main face, from its keypoints
    boxes: np.ndarray  # (T, 4)
    embedding: np.ndarray | None  # mean identity embedding of the main track

    def metrics(self) -> dict:
        return {
            "face_samples": self.n_samples,
            "face_count_max": self.face_count_max,
            "multi_face_ratio": round(self.multi_face_ratio, 3),
            "face_coverage": round(self.coverage, 3),
            "face_size_px": round(self.face_size_px, 1),
            "yaw_deg": round(self.yaw_deg, 1),
        }


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def yaw_from_keypoints(kps: np.ndarray) -> float:
    """Yaw in degrees from 5 keypoints: the nose's sideways offset from the eyes' midpoint,
    against the eyes' projected distance: offset / distance = (depth / eye distance) * tan(yaw), with
    the nose tip taken as one eye distance before the eyes (PC-AVS Input_00002, turned about 30
    degrees, reads 34 with this constant)."""
    left, right, nose = kps[0], kps[1], kps[2]
    iod = float(np.linalg.norm(right - left))
    if iod < 1e-6:
        return 90.0
    offset = float(nose[0] - (left[0] + right[0]) / 2)
    return math.degrees(math.atan(offset / iod))


def sample_step(fps: float, sample_fps: float) -> int:
    """Frames between two face samples: every analysis that samples uses the same frames."""
    return max(1, int(round(fps / sample_fps)))


def detector_size(height: int, width: int) -> tuple[int, int]:
    """SCRFD's input (width, height) for a frame: the frame's own size, shrunk to DETECT_MAX_SIDE on
    its long side but never enlarged, each side rounded up to SCRFD's largest stride (32).

    Why not insightface's fixed det_size: it letterboxes every frame into 640x640, so a 224x224 clip
    was enlarged 2.3x before detection (5x the pixels, no more detail) and a 16:9 frame ran a third
    of black rows; SCRFD is fully convolutional and takes any multiple of 32. A detector with a
    fixed input (e.g. scrfd_500m) keeps its own size: insightface ignores this one then.
    """
    scale = min(1.0, DETECT_MAX_SIDE / max(height, width))
    return stride_size(width * scale, height * scale)


def stride_size(width: float, height: float) -> tuple[int, int]:
    """(width, height) each rounded up to a multiple of SCRFD's largest stride (32), the input
    sizes its anchors tile exactly."""
    return math.ceil(width / STRIDE) * STRIDE, math.ceil(height / STRIDE) * STRIDE


def padded_for_detection(rgb: np.ndarray) -> tuple[np.ndarray, int, tuple[int, int]]:
    """A frame as SCRFD is given it: BGR, padded by an eighth of its larger side with black (SCRFD
    misses faces that touch the frame's edge: LivePortrait d3, 1 of 12 frames found unpadded, 12 of
    12 padded), with the pad and the detector's input size for it (`detector_size`)."""
    pad = max(rgb.shape[:2]) // 8
    bgr = cv2.copyMakeBorder(np.ascontiguousarray(rgb[..., ::-1]), pad, pad, pad, pad, cv2.BORDER_CONSTANT,
                             value=(0, 0, 0))  # fmt: skip
    return bgr, pad, detector_size(*bgr.shape[:2])


def reduced_size(full: tuple[int, int], shape: tuple[int, ...], floor_px: float, min_input_px: int) -> tuple[int, int]:
    """The smallest SCRFD input (width, height) for a padded frame of `shape` in which a face
    `floor_px` tall (frame pixels) is still at least `min_input_px` tall; `full` when that needs
    the full size (`detector_size`) or more.

    Why: SCRFD's time grows with its input's pixels, and a talking head 300 px tall is found as
    surely in a 256-px input as in a 640-px one: faces 32 px tall or more in the input are found
    as at full size, misses left only among faces scored near the threshold at full size too
    (`benchmarks/face_scale.py`)."""
    height, width = shape[:2]
    scale = min_input_px / floor_px if floor_px > 0 else 1.0
    if scale >= min(full[0] / width, full[1] / height):
        return full
    return stride_size(width * scale, height * scale)


def detect_samples(
    media: ClipMedia, model: str, sample_fps: float, gpus: float = 0.0, min_ratio: float = 0.0, min_input_px: int = 0
) -> tuple[list[list[Detection]], list[int]]:
    """Faces on frames sampled at `sample_fps`, in clip pixels (each frame padded first:
    `padded_for_detection`).

    With `min_input_px` > 0, a sample is searched at the smallest input (`reduced_size`) in which
    every face the sample before found, times `min_ratio`, stays `min_input_px` tall: faces
    smaller than `min_ratio` of a face in the picture do not count (`count_min_ratio`), so they
    need not be found. A sample that finds fewer faces that way than the one before (a face left,
    shrank, or is missed) is searched again at full size, and so is every sample after one with no
    face; with 0, every sample is searched at full size."""
    from insightface.app.common import Face

    app = face_analysis(model, gpus)
    detector, recognition = app.det_model, app.models["recognition"]
    frames = list(range(0, len(media.frames), sample_step(media.fps, sample_fps)))
    samples: list[list[Detection]] = []
    before = np.zeros((0, 5), np.float32)
    for s, f in enumerate(frames):
        bgr, pad, full = padded_for_detection(media.frames[f])
        size = full
        if min_input_px > 0 and len(before):
            size = reduced_size(full, bgr.shape, min_ratio * float(np.min(before[:, 3] - before[:, 1])), min_input_px)
        rows, points = detector.detect(bgr, input_size=size)
        if size != full and len(rows) < len(before):
            rows, points = detector.detect(bgr, input_size=full)
        found = []
        for row, kps in zip(rows, points, strict=True):
            face = Face(bbox=row[:4], kps=kps, det_score=row[4])
            recognition.get(bgr, face)  # aligns the crop on the keypoints and sets the embedding
            found.append(Detection(s, f, (row[:4] - pad) * media.scale, (kps - pad) * media.scale, float(row[4]),
                                   np.asarray(face.normed_embedding, dtype=np.float32)))  # fmt: skip
        samples.append(found)
        before = rows
    return samples, frames


def build_tracks(samples: list[list[Detection]], max_gap: int = 2) -> list[Track]:
    """Greedy tracking: overlap first, then identity (cosine) for faces that jumped."""
    tracks: list[Track] = []
    for dets in samples:
        open_tracks = [t for t in tracks if dets and dets[0].sample - t.last.sample <= max_gap + 1]
        pairs = sorted(
            ((iou(d.box, t.last.box), float(d.embedding @ t.last.embedding), i, j)
             for i, d in enumerate(dets) for j, t in enumerate(open_tracks)),
            reverse=True,
        )  # fmt: skip
        used_d: set[int] = set()
        used_t: set[int] = set()
        for overlap, cosine, i, j in pairs:
            if i in used_d or j in used_t or not (overlap > 0.3 or cosine > 0.5):
                continue
            open_tracks[j].detections.append(dets[i])
            used_d.add(i)
            used_t.add(j)
        tracks += [Track([d]) for i, d in enumerate(dets) if i not in used_d]
    return tracks


def per_frame_boxes(track: Track, n_frames: int, step: int, max_gap: int) -> np.ndarray:
    """Boxes at every frame: linear between samples, held for one step at the ends, NaN across
    gaps longer than `max_gap` samples (the face was really gone)."""
    boxes = np.full((n_frames, 4), np.nan, dtype=np.float32)
    dets = track.detections
    for a, b in zip(dets, dets[1:], strict=False):
        if b.sample - a.sample > max_gap + 1:
            continue
        for f in range(a.frame, b.frame + 1):
            w = (f - a.frame) / max(1, b.frame - a.frame)
            boxes[f] = (1 - w) * a.box + w * b.box
    for d in (dets[0], dets[-1]):
        lo, hi = max(0, d.frame - step + 1), min(n_frames, d.frame + step)
        for f in range(lo, hi):
            if np.isnan(boxes[f, 0]):
                boxes[f] = d.box
    return boxes


def analyze_faces(
    media: ClipMedia, model: str, sample_fps: float, count_min_ratio: float, gpus: float = 0.0, min_input_px: int = 0
) -> FaceSummary:
    samples, frames = detect_samples(media, model, sample_fps, gpus, count_min_ratio, min_input_px)
    step = sample_step(media.fps, sample_fps)
    n = len(media.frames)
    tracks = build_tracks(samples)
    if not tracks:
        return FaceSummary(len(samples), 0, 0.0, 0.0, 0.0, 0.0, np.full((n, 4), np.nan, np.float32), None)
    main = max(tracks, key=lambda t: (len(t.detections), np.mean([d.height for d in t.detections])))
    main_h = float(np.median([d.height for d in main.detections]))
    counts = [sum(d.height >= count_min_ratio * main_h for d in dets) for dets in samples]
    return FaceSummary(
        n_samples=len(samples),
        face_count_max=max(counts),
        multi_face_ratio=float(np.mean([c >= 2 for c in counts])),
        coverage=len(main.detections) / len(samples),
        face_size_px=main_h,
        yaw_deg=float(np.median([abs(yaw_from_keypoints(d.kps)) for d in main.detections])),
        boxes=per_frame_boxes(main, n, step, max_gap=2),
        embedding=main.mean_embedding(),
    )


@dataclass
class StableFace:
    """One face that stays in the picture: a real multi-person clip has one per person."""

    boxes: np.ndarray  # (T, 4) clip pixels, NaN where lost
    coverage: float  # share of sampled frames in which it was found
    height_px: float
    embedding: np.ndarray


def stable_faces(
    media: ClipMedia, model: str, sample_fps: float, min_coverage: float, min_ratio: float, min_input_px: int = 0
) -> list[StableFace]:
    """Tracks found in at least `min_coverage` of the samples and at least `min_ratio` as tall as
    the tallest such track, left to right (the order audio tracks bind to)."""
    samples, _ = detect_samples(media, model, sample_fps, min_ratio=min_ratio, min_input_px=min_input_px)
    step = sample_step(media.fps, sample_fps)
    tracks = [t for t in build_tracks(samples) if len(t.detections) >= min_coverage * len(samples)]
    if not tracks:
        return []
    tallest = max(float(np.median([d.height for d in t.detections])) for t in tracks)
    faces = []
    for track in tracks:
        height = float(np.median([d.height for d in track.detections]))
        if height >= min_ratio * tallest:
            boxes = per_frame_boxes(track, len(media.frames), step, max_gap=2)
            faces.append(StableFace(boxes, len(track.detections) / len(samples), height, track.mean_embedding()))
    return sorted(faces, key=lambda f: float(np.nanmedian((f.boxes[:, 0] + f.boxes[:, 2]) / 2)))
