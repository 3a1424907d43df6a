"""Identity similarity: does each generated person still look like their reference?

Embeddings come from an ArcFace-trained MobileFaceNet (foamliu/MobileFaceNet, Apache-2.0; LFW
99.48% per its README): a 112x112 crop aligned on SCRFD's five keypoints (insightface's
`norm_crop`, the ArcFace template), RGB with ImageNet mean and std, a 128-d embedding. The
cosine of the reference face and the same identity's face in sampled frames, averaged.
Measured on ../shared/models: same person across frames 0.69-0.83, different people -0.18 to +0.13.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tasks.models import ModelsMissing, load_once

IDENTITY_MODEL_ENV = "ANYTALKER_IDENTITY_MODEL"
DEFAULT_MODEL = "~/.cache/anytalker/mobilefacenet_arcface.onnx"
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


def resolve_identity_model(configured: str | None = None) -> Path:
    path = Path(os.environ.get(IDENTITY_MODEL_ENV) or configured or DEFAULT_MODEL).expanduser()
    if not path.is_file():
        raise ModelsMissing(
            f"identity model not found: {path}. Get MobileFaceNet.onnx (ArcFace-trained, foamliu/MobileFaceNet, "
            f"weights/) and name it in evaluate.identity_model or {IDENTITY_MODEL_ENV}."
        )
    return path


def _session(path: Path):
    def make():
        import onnxruntime as ort

        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    return load_once("identity", str(path), make)


def embed_face(image: np.ndarray, kps: np.ndarray, model: Path) -> np.ndarray:
    """The L2-normalised embedding of the face with keypoints `kps` (5, 2) in RGB `image`."""
    from insightface.utils.face_align import norm_crop

    crop = norm_crop(np.ascontiguousarray(image), kps.astype(np.float32), 112)  # RGB stays RGB
    x = ((crop.astype(np.float32) / 255 - _MEAN) / _STD).transpose(2, 0, 1)[None]
    session = _session(model)
    out = session.run(None, {session.get_inputs()[0].name: x})[0][0]
    return out / (np.linalg.norm(out) + 1e-9)


def identity_similarity(reference: list[np.ndarray], frames: np.ndarray, kps: np.ndarray, model: Path,
                        every: int = 8) -> list[float | None]:  # fmt: skip
    """Per identity i: the mean cosine of `reference[i]` (an embedding) and identity i's face in
    every `every`-th frame where it was found (kps (T, N, 5, 2), NaN where not); None if never found."""
    sims = []
    for i, ref in enumerate(reference):
        values = [float(embed_face(frames[t], kps[t, i], model) @ ref) for t in range(0, len(frames), every)
                  if not np.isnan(kps[t, i, 0, 0])]  # fmt: skip
        sims.append(float(np.mean(values)) if values else None)
    return sims
