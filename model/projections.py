"""Conditioning projections in the released checkpoints' layout (../shared/anytalker/README.md):
wav2vec2 windows to 32 audio tokens per video frame (`audio_emb`), and face image-encoder
tokens to the model width (`audio_ref_emb`, the same shape as Wan's image projection)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def audio_windows(hidden: torch.Tensor, window: int = 5) -> torch.Tensor:
    """(B, L, T, C) wav2vec2 hidden states of L layers, already at the video frame rate ->
    (B, T, window, L, C): for every frame the `window` frames centred on it (ends clamped)."""
    b, layers, t, c = hidden.shape
    x = hidden.permute(0, 2, 1, 3)  # (B, T, L, C)
    half = window // 2
    index = (torch.arange(t, device=x.device)[:, None] + torch.arange(-half, half + 1, device=x.device)).clamp(0, t - 1)
    return x[:, index]  # (B, T, window, L, C)


class AudioProjection(nn.Module):
    """A window of 5 frames x L layers x C features per video frame -> `tokens` tokens of `dim`:
    proj1 -> ReLU -> proj2 -> ReLU -> proj3 -> reshape -> LayerNorm (official `audio_emb`)."""

    def __init__(self, layers: int, channels: int, dim: int, window: int = 5, tokens: int = 32, hidden: int = 512) -> None:
        super().__init__()
        self.tokens, self.dim = tokens, dim
        self.proj1 = nn.Linear(window * layers * channels, hidden)
        self.proj2 = nn.Linear(hidden, hidden)
        self.proj3 = nn.Linear(hidden, tokens * dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """(..., T, window, L, C) -> (..., T, tokens, dim)."""
        x = F.relu(self.proj1(windows.flatten(-3)))
        x = F.relu(self.proj2(x))
        return self.norm(self.proj3(x).unflatten(-1, (self.tokens, self.dim)))


class FaceProjection(nn.Module):
    """Image-encoder tokens of a face crop -> tokens of the model width: LayerNorm -> Linear ->
    GELU -> Linear -> LayerNorm, indexed as the official `audio_ref_emb.proj`."""

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(
            nn.LayerNorm(channels), nn.Linear(channels, channels), nn.GELU(), nn.Linear(channels, dim), nn.LayerNorm(dim)
        )

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(tokens)
