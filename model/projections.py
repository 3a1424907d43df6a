"""Conditioning projections: wav2vec2 hidden states to audio tokens per video frame, and face
image-encoder tokens to the model width (DESIGN.md section 6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def audio_windows(hidden: torch.Tensor, frames: int, window: int = 5) -> torch.Tensor:
    """(B, L, S, C) wav2vec2 hidden states of L layers at 50 Hz -> (B, frames, window, L, C):
    the states interpolated to the video frame rate, then for every frame the `window` frames
    centred on it (edges repeated)."""
    b, layers, _, c = hidden.shape
    x = hidden.permute(0, 1, 3, 2).reshape(b, layers * c, -1)
    x = F.interpolate(x, size=frames, mode="linear", align_corners=True).reshape(b, layers, c, frames)
    x = x.permute(0, 3, 1, 2)  # (B, T, L, C)
    half = window // 2
    padded = torch.cat([x[:, :1].expand(b, half, layers, c), x, x[:, -1:].expand(b, half, layers, c)], dim=1)
    return padded.unfold(1, window, 1).permute(0, 1, 4, 2, 3)  # (B, T, window, L, C)


class AudioProjection(nn.Module):
    """A window of 5 frames x L layers x C features per video frame -> `tokens` tokens of `dim`."""

    def __init__(self, layers: int, channels: int, dim: int, window: int = 5, tokens: int = 32, hidden: int = 512) -> None:
        super().__init__()
        self.window, self.tokens, self.dim = window, tokens, dim
        self.proj_in = nn.Linear(window * layers * channels, hidden)
        self.proj_mid = nn.Linear(hidden, hidden)
        self.proj_out = nn.Linear(hidden, tokens * dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """(..., T, window, L, C) -> (..., T, tokens, dim)."""
        x = F.gelu(self.proj_in(windows.flatten(-3)))
        x = F.gelu(self.proj_mid(x))
        return self.norm(self.proj_out(x).unflatten(-1, (self.tokens, self.dim)))


class FaceProjection(nn.Module):
    """Image-encoder tokens of a face crop -> tokens of the model width."""

    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.norm_in = nn.LayerNorm(channels)
        self.proj = nn.Linear(channels, dim)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm_out(self.proj(self.norm_in(tokens)))
