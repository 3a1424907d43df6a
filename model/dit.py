"""The identity-aware DiT: diffusers' Wan2.1 transformer (image-to-video) with Audio-Face Cross
Attention inside every block's cross attention, as the released AnyTalker checkpoints compute it.

The backbone stays diffusers' own `WanTransformer3DModel` (its weights, config and
`from_pretrained`), and AnyTalker's layers live in `IdentityAdapter`, a diffusers model of its
own saved beside it. The forward pass is written out here rather than hooked into diffusers':
`IdentityAwareDiT.forward` runs the backbone's pieces (rotary embedding, patch embedding,
condition embedder, blocks, output head) in its own loop, and `identity_block` is diffusers'
block with AFCA as a numbered step of the cross attention. Every tensor a block needs is an
argument, so gradient checkpointing recomputes a block from its inputs alone.

Text and reference-image tokens are separate arguments all the way down: diffusers' own
processor splits one concatenated context at `L - 512`, which misroutes image tokens whenever
the text is not exactly 512 tokens; here no length is assumed (the text is still umT5 padded to
512, as Wan and AnyTalker train it: model/text.py).
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import WanTransformer3DModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.transformers.transformer_wan import WanAttention, WanTransformerBlock
from torch import nn
from torch.utils.checkpoint import checkpoint

from model.afca import AudioFaceKV, afca_packed
from model.projections import AudioProjection, FaceProjection


class IdentityAdapter(ModelMixin, ConfigMixin):
    """Everything AnyTalker adds to Wan: AFCA's face/audio keys and values in every block, the
    audio projection and the face projection."""

    @register_to_config
    def __init__(
        self, dim: int, num_layers: int, audio_layers: int, audio_channels: int, face_channels: int,
        audio_window: int = 5, audio_tokens: int = 32, audio_hidden: int = 512,
    ) -> None:  # fmt: skip
        super().__init__()
        self.afca = nn.ModuleList([AudioFaceKV(dim) for _ in range(num_layers)])
        self.audio_proj = AudioProjection(audio_layers, audio_channels, dim, audio_window, audio_tokens, audio_hidden)
        self.face_proj = FaceProjection(face_channels, dim)

    def zero_values(self) -> IdentityAdapter:
        """Identity layers that contribute nothing: for a start from a bare Wan backbone."""
        for kv in self.afca:
            kv.zero_values()
        return self


def _attention(attn: WanAttention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Multi-head attention as diffusers' Wan processor calls it: (B, L, D) in, (B, L, D) out."""
    heads = attn.heads
    out = dispatch_attention_fn(
        q.unflatten(2, (heads, -1)), k.unflatten(2, (heads, -1)), v.unflatten(2, (heads, -1)),
        attn_mask=None, dropout_p=0.0, is_causal=False,
    )  # fmt: skip
    return out.flatten(2, 3).type_as(q)


# Adapted from diffusers.models.transformers.transformer_wan.WanAttnProcessor.__call__ (0.42.1), with
# the text and image contexts as separate arguments and AFCA as step 4
def cross_attention(
    attn: WanAttention,
    kv: AudioFaceKV,
    x: torch.Tensor,  # (B, L, D) normed video tokens
    text: torch.Tensor,  # (B, Lt, D) embedded text tokens
    image: torch.Tensor | None,  # (B, Li, D) embedded reference-image tokens
    face: torch.Tensor,  # (B, N, Kf, D) projected face tokens
    audio: torch.Tensor,  # (B, N, T, A, D) projected audio tokens
    masks: torch.Tensor,  # (B, N, h, w)
    grid: tuple[int, int, int],
) -> torch.Tensor:
    # 1. one query for text, image and every identity
    q = attn.norm_q(attn.to_q(x))
    # 2. text
    out = _attention(attn, q, attn.norm_k(attn.to_k(text)), attn.to_v(text))
    # 3. reference image (Wan image-to-video)
    if image is not None:
        out = out + _attention(attn, q, attn.norm_added_k(attn.add_k_proj(image)), attn.add_v_proj(image))
    # 4. AFCA: each identity's face and audio, masked to its face, summed
    out = out + afca_packed(q, kv, attn.heads, grid, face, audio, masks)
    # 5. the shared output projection
    return attn.to_out[1](attn.to_out[0](out))


# Copied from diffusers.models.transformers.transformer_wan.WanTransformerBlock.forward (0.42.1) with
# attn2 replaced by `cross_attention` (text, image and AFCA) and per-sample timesteps only
def identity_block(
    block: WanTransformerBlock,
    kv: AudioFaceKV,
    x: torch.Tensor,  # (B, L, D)
    text: torch.Tensor,
    image: torch.Tensor | None,
    temb: torch.Tensor,  # (B, 6, D) timestep projection
    rotary: tuple[torch.Tensor, torch.Tensor],
    face: torch.Tensor,
    audio: torch.Tensor,
    masks: torch.Tensor,
    grid: tuple[int, int, int],
) -> torch.Tensor:
    shift_msa, scale_msa, gate_msa, c_shift_msa, c_scale_msa, c_gate_msa = (
        block.scale_shift_table + temb.float()
    ).chunk(6, dim=1)
    # 1. self-attention
    norm_x = (block.norm1(x.float()) * (1 + scale_msa) + shift_msa).type_as(x)
    attn_output = block.attn1(norm_x, None, None, rotary)
    x = (x.float() + attn_output * gate_msa).type_as(x)
    # 2. cross-attention: text, reference image and AFCA
    norm_x = block.norm2(x.float()).type_as(x)
    x = x + cross_attention(block.attn2, kv, norm_x, text, image, face, audio, masks, grid)
    # 3. feed-forward
    norm_x = (block.norm3(x.float()) * (1 + c_scale_msa) + c_shift_msa).type_as(x)
    ff_output = block.ffn(norm_x)
    return (x.float() + ff_output.float() * c_gate_msa).type_as(x)


class IdentityAwareDiT(nn.Module):
    def __init__(self, backbone: WanTransformer3DModel, adapter: IdentityAdapter) -> None:
        super().__init__()
        self.backbone = backbone
        self.adapter = adapter
        self.gradient_checkpointing = False

    def enable_gradient_checkpointing(self) -> None:
        """Recompute every block in backward instead of keeping its activations (14B needs it)."""
        self.gradient_checkpointing = True

    @property
    def patch_size(self) -> tuple[int, int, int]:
        return tuple(self.backbone.config.patch_size)

    # Adapted from diffusers.models.transformers.transformer_wan.WanTransformer3DModel.forward (0.42.1)
    def forward(
        self,
        latents: torch.Tensor,  # (B, C_in, f, H, W): noisy latents + mask channels + reference latents
        timestep: torch.Tensor,  # (B,) in [0, 1000]
        text: torch.Tensor,  # (B, 512, text_dim) umT5 embeddings, zero-padded
        image: torch.Tensor | None,  # (B, Li, image_dim) reference-image tokens, or None
        audio_windows: torch.Tensor,  # (B, N, T, window, L, C) from model.projections.audio_windows
        face_tokens: torch.Tensor,  # (B, N, Kf, Cf) image-encoder tokens of each identity's face
        masks: torch.Tensor,  # (B, N, H/p, W/p) face masks on the patched grid
    ) -> torch.Tensor:
        bb = self.backbone
        b, _, f, height, width = latents.shape
        pt, ph, pw = self.patch_size
        grid = (f // pt, height // ph, width // pw)
        # 1. rotary positions and patches
        rotary = bb.rope(latents)
        x = bb.patch_embedding(latents).flatten(2).transpose(1, 2).contiguous()
        # 2. timestep, text and reference-image embeddings
        temb, timestep_proj, text, image = bb.condition_embedder(timestep, text, image)
        timestep_proj = timestep_proj.unflatten(1, (6, -1))
        # 3. identity conditions: audio tokens per video frame, face tokens per identity
        dtype = x.dtype
        audio = self.adapter.audio_proj(audio_windows.to(dtype))
        face = self.adapter.face_proj(face_tokens.to(dtype))
        masks = masks.to(dtype)
        # 4. the blocks, each with its AFCA
        for block, kv in zip(bb.blocks, self.adapter.afca, strict=True):
            args = (block, kv, x, text, image, timestep_proj, rotary, face, audio, masks, grid)
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint(identity_block, *args, use_reentrant=False)
            else:
                x = identity_block(*args)
        # 5. output head and unpatchify
        shift, scale = (bb.scale_shift_table + temb.unsqueeze(1)).chunk(2, dim=1)
        x = (bb.norm_out(x.float()) * (1 + scale) + shift).type_as(x)
        x = bb.proj_out(x)
        x = x.reshape(b, *grid, pt, ph, pw, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.flatten(6, 7).flatten(4, 5).flatten(2, 3)

    def save_pretrained(self, folder: str | Path) -> None:
        """Two diffusers folders: `transformer/` (Wan, loadable on its own) and `adapter/`."""
        folder = Path(folder)
        self.backbone.save_pretrained(folder / "transformer")
        self.adapter.save_pretrained(folder / "adapter")

    @classmethod
    def from_pretrained(cls, folder: str | Path, adapter: IdentityAdapter | None = None) -> IdentityAwareDiT:
        """A saved model; or a Wan2.1 folder (its `transformer/`) with the adapter given."""
        folder = Path(folder)
        backbone = WanTransformer3DModel.from_pretrained(folder / "transformer")
        if adapter is None:
            adapter = IdentityAdapter.from_pretrained(folder / "adapter")
        return cls(backbone, adapter)
