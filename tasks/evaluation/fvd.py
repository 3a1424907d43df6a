"""FVD, only when an I3D TorchScript file is given (never a placeholder value otherwise).

Protocol (fixed, the one StyleGAN-V and most talking-head papers use with `i3d_torchscript.pt`):
each video's first 16 frames (videos with fewer are left out), resized to 224x224 (bilinear),
RGB scaled to [-1, 1], fed as (B, 3, 16, 224, 224) with `rescale=False, resize=False,
return_features=True`; the Frechet distance between the Gaussians of the generated and the
real features. With fewer than two videos per side it is not reported.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

CLIP_FRAMES = 16


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Between the Gaussians fitted to feature rows of `a` and `b`."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * np.real(root)))


def _clip(path: Path) -> np.ndarray | None:
    from shards.codec import decode_video

    frames, _ = decode_video(Path(path).read_bytes(), None, CLIP_FRAMES)
    if len(frames) < CLIP_FRAMES:
        return None
    resized = np.stack([cv2.resize(f, (224, 224), interpolation=cv2.INTER_LINEAR) for f in frames[:CLIP_FRAMES]])
    return resized.astype(np.float32) / 127.5 - 1.0


def i3d_features(paths: list[Path], i3d: Path) -> np.ndarray:
    import torch

    model = torch.jit.load(str(i3d), map_location="cpu").eval()
    rows = []
    with torch.inference_mode():
        for path in paths:
            clip = _clip(path)
            if clip is not None:
                x = torch.from_numpy(clip).permute(3, 0, 1, 2)[None]
                rows.append(model(x, rescale=False, resize=False, return_features=True).numpy()[0])
    return np.stack(rows) if rows else np.zeros((0, 0))


def fvd(generated: list[Path], real: list[Path], i3d: Path | None) -> float | None:
    if i3d is None or not Path(i3d).is_file():
        return None
    a, b = i3d_features(generated, Path(i3d)), i3d_features(real, Path(i3d))
    if len(a) < 2 or len(b) < 2:
        return None
    return frechet_distance(a, b)
