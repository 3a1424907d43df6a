"""Audio-Face Cross Attention (AFCA), AnyTalker's identity-aware attention (DESIGN.md section 6),
in the layout of the released checkpoints (../shared/anytalker/README.md, "per block").

AFCA lives inside the block's cross attention and shares its query and output projection:

    q      = norm_q(to_q(norm2(x)))                          (the cross attention's own query)
    afca_i = attend(q, [norm_k_face(k_face(face_i)); norm_k_audio(k_audio(audio_i))],
                       [v_face(face_i); v_audio(audio_i)])
    out    = to_out(text_out + image_out + sum_i m_i * afca_i)

The face tokens are always visible; the audio is masked in time: latent frame 0 attends to all
audio, latent frame j >= 1 only to the audio of video frames 4(j-1)+1 .. 4j (the VAE's
temporal stride). `AudioFaceKV` holds the only weights AFCA has in a block: face and audio
key/value projections and RMSNorms on the keys (official names).

The paper's code loops over identities and attends with every video token each time, so the
cost grows linearly with N. A token outside m_i adds nothing for identity i, so `afca_packed`
gathers only the tokens inside some mask, packs them per identity, and sends all identities
and latent frames through one attention call: the work follows the masked area, which the
frame bounds, not N. `afca_loop` is the paper's form, kept as the reference the packed form is
tested against and benchmarked with.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

TEMPORAL_STRIDE = 4


class AudioFaceKV(nn.Module):
    """AFCA's weights in one block: 4 projections of the model width and 2 key norms."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.k_face = nn.Linear(dim, dim)
        self.v_face = nn.Linear(dim, dim)
        self.norm_k_face = nn.RMSNorm(dim, eps=eps)
        self.k_audio = nn.Linear(dim, dim)
        self.v_audio = nn.Linear(dim, dim)
        self.norm_k_audio = nn.RMSNorm(dim, eps=eps)

    @torch.no_grad()
    def zero_values(self) -> None:
        """Start from a bare Wan backbone: with zero values every AFCA output is exactly zero, so
        the backbone computes what it computed before (the keys still get gradients through q)."""
        for linear in (self.v_face, self.v_audio):
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    def face_kv(self, face: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.norm_k_face(self.k_face(face)), self.v_face(face)

    def audio_kv(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.norm_k_audio(self.k_audio(audio)), self.v_audio(audio)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """(..., Lq, D) x (..., Lk, D) -> (..., Lq, D), multi-head."""
    shape, d = q.shape[:-2], q.shape[-1] // heads

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, x.shape[-2], heads, d).transpose(1, 2)

    out = F.scaled_dot_product_attention(split(q), split(k), split(v))
    return out.transpose(1, 2).reshape(*shape, q.shape[-2], heads * d)


def _frame_windows(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, N, T, A, D) audio tokens per video frame -> (B, N, f-1, 4A, D): latent frame j >= 1's
    own 4 video frames."""
    return x[:, :, 1:].unflatten(2, (frames - 1, TEMPORAL_STRIDE)).flatten(3, 4)


def afca_packed(
    q: torch.Tensor,  # (B, f*h*w, D) the cross attention's normed query, frame-major
    kv: AudioFaceKV,
    heads: int,
    grid: tuple[int, int, int],  # (f, h, w) latent grid after patching
    face: torch.Tensor,  # (B, N, Kf, D) projected face tokens per identity
    audio: torch.Tensor,  # (B, N, T, A, D) projected audio tokens per video frame, T = 4(f-1)+1
    masks: torch.Tensor,  # (B, N, h, w) face masks on the grid, 0..1
) -> torch.Tensor:
    """sum_i m_i * afca_i, before the shared output projection: (B, f*h*w, D)."""
    b, _, dim = q.shape
    f, h, w = grid
    n = masks.shape[1]
    sel = masks.flatten(2) > 0  # (B, N, hw)
    counts = sel.sum(-1)
    p = int(counts.max()) if counts.numel() else 0
    if p == 0:
        return torch.zeros_like(q)
    # the masked positions of each (b, i), first in order, padded to p
    pos = torch.argsort((~sel).to(torch.int8), dim=-1, stable=True)[..., :p]  # (B, N, P)
    valid = torch.arange(p, device=q.device) < counts[..., None]  # (B, N, P)
    weight = torch.gather(masks.flatten(2).to(q.dtype), 2, pos) * valid  # (B, N, P)

    frames = q.view(b, f, h * w, dim)
    index = pos[:, :, None, :, None].expand(b, n, f, p, dim)
    qi = torch.gather(frames[:, None].expand(b, n, f, h * w, dim), 3, index)  # (B, N, f, P, D)

    k_face, v_face = kv.face_kv(face)  # (B, N, Kf, D)
    k_audio, v_audio = kv.audio_kv(audio)  # (B, N, T, A, D)
    kf = face.shape[2]
    # latent frame 0: face tokens and every audio token
    k0 = torch.cat([k_face, k_audio.flatten(2, 3)], dim=2)
    v0 = torch.cat([v_face, v_audio.flatten(2, 3)], dim=2)
    outs = [_attend(qi[:, :, :1], k0[:, :, None], v0[:, :, None], heads)]
    if f > 1:  # latent frames 1..f-1: face tokens and their own 4 video frames' audio
        kj = torch.cat([k_face[:, :, None].expand(b, n, f - 1, kf, dim), _frame_windows(k_audio, f)], dim=3)
        vj = torch.cat([v_face[:, :, None].expand(b, n, f - 1, kf, dim), _frame_windows(v_audio, f)], dim=3)
        outs.append(_attend(qi[:, :, 1:], kj, vj, heads))
    out = torch.cat(outs, dim=2) * weight[:, :, None, :, None]  # (B, N, f, P, D)
    src = out.permute(0, 2, 1, 3, 4).reshape(b, f, n * p, dim)
    target = pos[:, None].expand(b, f, n, p).reshape(b, f, n * p, 1).expand(b, f, n * p, dim)
    result = torch.zeros(b, f, h * w, dim, dtype=out.dtype, device=q.device)
    result.scatter_add_(2, target, src)  # padded entries carry weight 0
    return result.view(b, f * h * w, dim)


def afca_loop(
    q: torch.Tensor, kv: AudioFaceKV, heads: int, grid: tuple[int, int, int], face: torch.Tensor,
    audio: torch.Tensor, masks: torch.Tensor,
) -> torch.Tensor:  # fmt: skip
    """The paper's form: every token attends once per identity, then the mask selects."""
    b, _, dim = q.shape
    f, h, w = grid
    q = q.view(b, f, h * w, dim)
    total = torch.zeros(b, f, h * w, dim, dtype=q.dtype, device=q.device)
    for i in range(masks.shape[1]):
        k_face, v_face = kv.face_kv(face[:, i])
        k_audio, v_audio = kv.audio_kv(audio[:, i])  # (B, T, A, D)
        for j in range(f):
            span = slice(None) if j == 0 else slice(TEMPORAL_STRIDE * (j - 1) + 1, TEMPORAL_STRIDE * j + 1)
            k = torch.cat([k_face, k_audio[:, span].flatten(1, 2)], dim=1)
            v = torch.cat([v_face, v_audio[:, span].flatten(1, 2)], dim=1)
            total[:, j] += _attend(q[:, j], k, v, heads) * masks[:, i].flatten(1)[..., None].to(q.dtype)
    return total.view(b, f * h * w, dim)
