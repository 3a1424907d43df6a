"""Audio-Face Cross Attention (AFCA), AnyTalker's identity-aware layer (DESIGN.md section 6).

For each identity i, the video tokens attend to keys and values made of i's face tokens and
i's audio tokens; the result is multiplied by i's face mask M_i on the latent grid, and the
results of all identities are summed. Latent frame 0 attends to all audio; latent frame j >= 1
only to the audio of video frames 4(j-1)+1 .. 4j (the VAE's temporal stride is 4).

The paper's code loops over identities and attends with every video token each time, so the
cost grows linearly with N. Here a token outside M_i contributes nothing for identity i, so
only the tokens inside some mask are gathered, packed per identity, and all identities and
latent frames go through one attention call: the work follows the masked area, which the
frame bounds, not N. `forward_loop` is the paper's form, kept as the reference the packed form
is tested against and benchmarked with.

The output projection starts at zero, so a pretrained backbone is unchanged at step 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

TEMPORAL_STRIDE = 4


class AudioFaceCrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.norm_q = nn.RMSNorm(dim, eps=eps)
        self.norm_k = nn.RMSNorm(dim, eps=eps)
        self.to_out = nn.Linear(dim, dim)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def _kv(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.norm_k(self.to_k(tokens)), self.to_v(tokens)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(..., Lq, D) x (..., Lk, D) -> (..., Lq, D), multi-head."""
        shape = q.shape[:-2]
        h, d = self.heads, q.shape[-1] // self.heads

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(-1, x.shape[-2], h, d).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(q), split(k), split(v))
        return out.transpose(1, 2).reshape(*shape, q.shape[-2], h * d)

    def forward(
        self,
        x: torch.Tensor,  # (B, f*h*w, D) video tokens, frame-major
        grid: tuple[int, int, int],  # (f, h, w) latent grid after patching
        face: torch.Tensor,  # (B, N, Kf, D) face tokens per identity
        audio: torch.Tensor,  # (B, N, T, A, D) audio tokens per video frame, T = 4(f-1)+1
        masks: torch.Tensor,  # (B, N, h, w) face masks on the grid, 0..1
    ) -> torch.Tensor:
        b, _, dim = x.shape
        f, h, w = grid
        n = masks.shape[1]
        sel = masks.flatten(2) > 0  # (B, N, hw)
        counts = sel.sum(-1)
        p = int(counts.max()) if counts.numel() else 0
        if p == 0:
            return torch.zeros_like(x)
        # the masked positions of each (b, i), first in order, padded to p
        pos = torch.argsort((~sel).to(torch.int8), dim=-1, stable=True)[..., :p]  # (B, N, P)
        valid = torch.arange(p, device=x.device) < counts[..., None]  # (B, N, P)
        weight = torch.gather(masks.flatten(2), 2, pos) * valid  # (B, N, P)

        frames = self.norm(x).view(b, f, h * w, dim)
        index = pos[:, :, None, :, None].expand(b, n, f, p, dim)
        q = self.norm_q(self.to_q(torch.gather(frames[:, None].expand(b, n, f, h * w, dim), 3, index)))

        k_face, v_face = self._kv(face)  # (B, N, Kf, D)
        k_audio, v_audio = self._kv(audio)  # (B, N, T, A, D)
        kf = face.shape[2]
        # latent frame 0: face tokens and every audio token
        k0 = torch.cat([k_face, k_audio.flatten(2, 3)], dim=2)
        v0 = torch.cat([v_face, v_audio.flatten(2, 3)], dim=2)
        outs = [self._attend(q[:, :, :1], k0[:, :, None], v0[:, :, None])]
        if f > 1:  # latent frames 1..f-1: face tokens and their own 4 video frames' audio
            windows = k_audio[:, :, 1:].unflatten(2, (f - 1, TEMPORAL_STRIDE)).flatten(3, 4)  # (B,N,f-1,4A,D)
            vwindows = v_audio[:, :, 1:].unflatten(2, (f - 1, TEMPORAL_STRIDE)).flatten(3, 4)
            kj = torch.cat([k_face[:, :, None].expand(b, n, f - 1, kf, dim), windows], dim=3)
            vj = torch.cat([v_face[:, :, None].expand(b, n, f - 1, kf, dim), vwindows], dim=3)
            outs.append(self._attend(q[:, :, 1:], kj, vj))
        out = self.to_out(torch.cat(outs, dim=2)) * weight[:, :, None, :, None]  # (B, N, f, P, D)
        src = out.permute(0, 2, 1, 3, 4).reshape(b, f, n * p, dim)
        target = pos[:, None].expand(b, f, n, p).reshape(b, f, n * p, 1).expand(b, f, n * p, dim)
        result = torch.zeros(b, f, h * w, dim, dtype=out.dtype, device=x.device)
        result.scatter_add_(2, target, src)  # padded entries carry weight 0
        return result.view(b, f * h * w, dim)

    def forward_loop(
        self, x: torch.Tensor, grid: tuple[int, int, int], face: torch.Tensor, audio: torch.Tensor, masks: torch.Tensor
    ) -> torch.Tensor:
        """The paper's form: every token attends once per identity, then the mask selects."""
        b, _, dim = x.shape
        f, h, w = grid
        q = self.norm_q(self.to_q(self.norm(x))).view(b, f, h * w, dim)
        total = torch.zeros(b, f, h * w, dim, dtype=x.dtype, device=x.device)
        for i in range(masks.shape[1]):
            k_face, v_face = self._kv(face[:, i])
            k_audio, v_audio = self._kv(audio[:, i])  # (B, T, A, D)
            for j in range(f):
                span = slice(None) if j == 0 else slice(TEMPORAL_STRIDE * (j - 1) + 1, TEMPORAL_STRIDE * j + 1)
                k = torch.cat([k_face, k_audio[:, span].flatten(1, 2)], dim=1)
                v = torch.cat([v_face, v_audio[:, span].flatten(1, 2)], dim=1)
                out = self.to_out(self._attend(q[:, j], k, v))
                total[:, j] += out * masks[:, i].flatten(1)[..., None]
        return total.view(b, f * h * w, dim)
