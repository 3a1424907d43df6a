"""The identity-aware DiT: diffusers' Wan2.1 transformer (image-to-video) with an AFCA layer in
every block after the text/image cross attention.

The backbone stays diffusers' own `WanTransformer3DModel`, so real Wan2.1 checkpoints load with
`from_pretrained`; our layers live in `IdentityAdapter` (AFCA per block, audio and face
projections), a diffusers model of its own saved beside it. AFCA is attached with two hooks
per block instead of a copied block: a pre-hook on `norm2` sees the hidden states h entering
the cross attention, and a hook on `attn2` returns attn2(h) + AFCA(h + attn2(h)), so the block
computes h + attn2 + AFCA(after attn2) exactly as the paper orders it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import WanTransformer3DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from model.afca import AudioFaceCrossAttention
from model.projections import AudioProjection, FaceProjection


class IdentityAdapter(ModelMixin, ConfigMixin):
    """Everything AnyTalker adds to Wan: AFCA per block, the audio and face projections."""

    @register_to_config
    def __init__(
        self, dim: int, heads: int, num_layers: int, audio_layers: int, audio_channels: int, face_channels: int,
        audio_window: int = 5, audio_tokens: int = 32, audio_hidden: int = 512,
    ) -> None:  # fmt: skip
        super().__init__()
        self.afca = nn.ModuleList([AudioFaceCrossAttention(dim, heads) for _ in range(num_layers)])
        self.audio_proj = AudioProjection(audio_layers, audio_channels, dim, audio_window, audio_tokens, audio_hidden)
        self.face_proj = FaceProjection(face_channels, dim)


@dataclass
class _Context:
    grid: tuple[int, int, int]
    face: torch.Tensor
    audio: torch.Tensor
    masks: torch.Tensor
    entering: torch.Tensor | None = None


class IdentityAwareDiT(nn.Module):
    def __init__(self, backbone: WanTransformer3DModel, adapter: IdentityAdapter) -> None:
        super().__init__()
        self.backbone = backbone
        self.adapter = adapter
        self._context: _Context | None = None
        for block, afca in zip(backbone.blocks, adapter.afca, strict=True):
            block.norm2.register_forward_pre_hook(self._remember_entering)
            block.attn2.register_forward_hook(self._make_afca_hook(afca))

    def _remember_entering(self, module: nn.Module, args: tuple) -> None:
        if self._context is not None:
            self._context.entering = args[0]

    def _make_afca_hook(self, afca: AudioFaceCrossAttention):
        def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
            c = self._context
            if c is None:
                return output
            after = c.entering.to(output.dtype) + output
            return output + afca(after, c.grid, c.face, c.audio, c.masks).to(output.dtype)

        return hook

    @property
    def patch_size(self) -> tuple[int, int, int]:
        return tuple(self.backbone.config.patch_size)

    def forward(
        self,
        latents: torch.Tensor,  # (B, C_in, f, H, W): noisy latents + mask channels + reference latents
        timestep: torch.Tensor,  # (B,) in [0, 1000]
        text: torch.Tensor,  # (B, Lt, text_dim)
        image: torch.Tensor | None,  # (B, Li, image_dim) reference-image tokens, or None
        audio_windows: torch.Tensor,  # (B, N, T, window, L, C) from model.projections.audio_windows
        face_tokens: torch.Tensor,  # (B, N, Kf, Cf) image-encoder tokens of each identity's face
        masks: torch.Tensor,  # (B, N, H/p, W/p) face masks on the patched grid
    ) -> torch.Tensor:
        pt, ph, pw = self.patch_size
        grid = (latents.shape[2] // pt, latents.shape[3] // ph, latents.shape[4] // pw)
        dtype = next(self.adapter.parameters()).dtype
        self._context = _Context(
            grid, self.adapter.face_proj(face_tokens.to(dtype)), self.adapter.audio_proj(audio_windows.to(dtype)),
            masks.to(dtype),
        )  # fmt: skip
        try:
            return self.backbone(latents, timestep, text, encoder_hidden_states_image=image, return_dict=False)[0]
        finally:
            self._context = None

    def save_pretrained(self, folder: str | Path) -> None:
        """Two diffusers folders: `transformer/` (Wan, loadable on its own) and `adapter/`."""
        folder = Path(folder)
        self.backbone.save_pretrained(folder / "transformer")
        self.adapter.save_pretrained(folder / "adapter")

    @classmethod
    def from_pretrained(cls, folder: str | Path, adapter: IdentityAdapter | None = None) -> IdentityAwareDiT:
        """A saved model; or a Wan2.1 checkpoint folder (its `transformer/`) with a new adapter."""
        folder = Path(folder)
        backbone = WanTransformer3DModel.from_pretrained(folder / "transformer")
        if adapter is None:
            adapter = IdentityAdapter.from_pretrained(folder / "adapter")
        return cls(backbone, adapter)
