"""Import the released AnyTalker checkpoints (`torch.load(path)["model"]`: a full DiT state dict
in original Wan naming) into a model folder: `transformer/` (diffusers `WanTransformer3DModel`,
loadable on its own) + `adapter/` (`IdentityAdapter`) + `anytalker.yaml` (encoder folders).

The AnyTalker tensors (`cross_attn.{k,v,norm_k}_{face,audio}`, `audio_emb.*`, `audio_ref_emb.*`)
are split off first, then the Wan tensors are renamed by exact patterns (the names diffusers'
converter produces, ../shared/anytalker/README.md "Converting their naming"); substring rules
would mangle the AnyTalker names. Both parts load with strict=True into models built on the
meta device with `assign=True`, and the checkpoint is memory-mapped, so the import holds one
copy of the weights (the file's pages), not two.

The 14B release (`audio_cross_attn` after the cross attention, 769-token text branch) is a
different block and is refused with what differs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import WanTransformer3DModel

from model.config import ModelConfig
from model.dit import IdentityAdapter, IdentityAwareDiT
from model.folder import save_model_folder

# (pattern over an original name, diffusers name); {i} keeps the block index
_WAN_RENAMES = [
    (r"patch_embedding\.(weight|bias)", r"patch_embedding.\1"),
    (r"text_embedding\.0\.(weight|bias)", r"condition_embedder.text_embedder.linear_1.\1"),
    (r"text_embedding\.2\.(weight|bias)", r"condition_embedder.text_embedder.linear_2.\1"),
    (r"time_embedding\.0\.(weight|bias)", r"condition_embedder.time_embedder.linear_1.\1"),
    (r"time_embedding\.2\.(weight|bias)", r"condition_embedder.time_embedder.linear_2.\1"),
    (r"time_projection\.1\.(weight|bias)", r"condition_embedder.time_proj.\1"),
    (r"img_emb\.proj\.0\.(weight|bias)", r"condition_embedder.image_embedder.norm1.\1"),
    (r"img_emb\.proj\.1\.(weight|bias)", r"condition_embedder.image_embedder.ff.net.0.proj.\1"),
    (r"img_emb\.proj\.3\.(weight|bias)", r"condition_embedder.image_embedder.ff.net.2.\1"),
    (r"img_emb\.proj\.4\.(weight|bias)", r"condition_embedder.image_embedder.norm2.\1"),
    (r"head\.modulation", r"scale_shift_table"),
    (r"head\.head\.(weight|bias)", r"proj_out.\1"),
    (r"blocks\.(\d+)\.modulation", r"blocks.\1.scale_shift_table"),
    (r"blocks\.(\d+)\.self_attn\.q\.(weight|bias)", r"blocks.\1.attn1.to_q.\2"),
    (r"blocks\.(\d+)\.self_attn\.k\.(weight|bias)", r"blocks.\1.attn1.to_k.\2"),
    (r"blocks\.(\d+)\.self_attn\.v\.(weight|bias)", r"blocks.\1.attn1.to_v.\2"),
    (r"blocks\.(\d+)\.self_attn\.o\.(weight|bias)", r"blocks.\1.attn1.to_out.0.\2"),
    (r"blocks\.(\d+)\.self_attn\.norm_(q|k)\.weight", r"blocks.\1.attn1.norm_\2.weight"),
    (r"blocks\.(\d+)\.norm3\.(weight|bias)", r"blocks.\1.norm2.\2"),  # Wan's norm3 feeds the cross attention
    (r"blocks\.(\d+)\.cross_attn\.q\.(weight|bias)", r"blocks.\1.attn2.to_q.\2"),
    (r"blocks\.(\d+)\.cross_attn\.k\.(weight|bias)", r"blocks.\1.attn2.to_k.\2"),
    (r"blocks\.(\d+)\.cross_attn\.v\.(weight|bias)", r"blocks.\1.attn2.to_v.\2"),
    (r"blocks\.(\d+)\.cross_attn\.o\.(weight|bias)", r"blocks.\1.attn2.to_out.0.\2"),
    (r"blocks\.(\d+)\.cross_attn\.norm_(q|k)\.weight", r"blocks.\1.attn2.norm_\2.weight"),
    (r"blocks\.(\d+)\.cross_attn\.k_img\.(weight|bias)", r"blocks.\1.attn2.add_k_proj.\2"),
    (r"blocks\.(\d+)\.cross_attn\.v_img\.(weight|bias)", r"blocks.\1.attn2.add_v_proj.\2"),
    (r"blocks\.(\d+)\.cross_attn\.norm_k_img\.weight", r"blocks.\1.attn2.norm_added_k.weight"),
    (r"blocks\.(\d+)\.ffn\.0\.(weight|bias)", r"blocks.\1.ffn.net.0.proj.\2"),
    (r"blocks\.(\d+)\.ffn\.2\.(weight|bias)", r"blocks.\1.ffn.net.2.\2"),
]
_ANYTALKER_RENAMES = [
    (r"blocks\.(\d+)\.cross_attn\.((?:k|v|norm_k)_(?:face|audio))\.(weight|bias)", r"afca.\1.\2.\3"),
    (r"audio_emb\.(proj1|proj2|proj3|norm)\.(weight|bias)", r"audio_proj.\1.\2"),
    (r"audio_ref_emb\.proj\.([0134])\.(weight|bias)", r"face_proj.proj.\1.\2"),
]
_WAN = [(re.compile(p + "$"), r) for p, r in _WAN_RENAMES]
_ANYTALKER = [(re.compile(p + "$"), r) for p, r in _ANYTALKER_RENAMES]


class ImportRefused(ValueError):
    """A checkpoint this importer cannot map exactly; the message says what differs."""


def official_name(name: str) -> tuple[str, str]:
    """An original name -> ("adapter" | "transformer", our name). AnyTalker names are matched
    first, so no Wan rule ever sees them."""
    for part, rules in (("adapter", _ANYTALKER), ("transformer", _WAN)):
        for pattern, replacement in rules:
            if pattern.match(name):
                return part, pattern.sub(replacement, name)
    raise ImportRefused(f"tensor {name!r} has no place in the 1.3B AnyTalker layout")


@dataclass(frozen=True)
class ImportShape:
    """What the state dict's shapes cannot say: the head count and the wav2vec2 window layout."""

    head_dim: int = 128  # Wan2.1 1.3B and 14B
    audio_window: int = 5
    audio_layers: int = 12  # wav2vec2-base: 12 hidden layers of 768


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The `model` state dict of an official checkpoint, memory-mapped (no copy in RAM)."""
    path = Path(path)
    if not path.is_file():
        raise ImportRefused(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    try:
        loaded = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as exc:  # a legacy (non-zip) file cannot be mapped; anything else is not a checkpoint
        raise ImportRefused(f"{path}: not a torch checkpoint that can be memory-mapped ({exc})") from None
    state = loaded.get("model", loaded) if isinstance(loaded, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ImportRefused(f"{path}: expected {{'model': state_dict}} as AnyTalker saves it")
    return state


def refuse_other_layouts(state: dict[str, torch.Tensor]) -> None:
    if any(".audio_cross_attn." in k for k in state):
        raise ImportRefused(
            "this is the 14B layout: its blocks add a separate `audio_cross_attn` (q_linear, kv_linear over 768-d "
            "audio tokens, proj, k_face, v_face, no q/k norms) after the cross attention, on an affine norm_x, attend "
            "per latent frame without the temporal mask, add `audio_emb.proj1_vf`, and its text branch attends over "
            "CLIP and text tokens concatenated (769), which diffusers' Wan attention cannot express; only the 1.3B "
            "layout (AFCA inside the cross attention, sharing its query and output projection) is imported"
        )
    if "patch_embedding.weight" not in state or "audio_emb.proj1.weight" not in state:
        raise ImportRefused("not an AnyTalker DiT state dict (no patch_embedding / audio_emb tensors)")


def shapes_of(state: dict[str, torch.Tensor], shape: ImportShape) -> tuple[dict, dict]:
    """(WanTransformer3DModel kwargs, IdentityAdapter kwargs) read off the tensors."""
    patch = state["patch_embedding.weight"]
    dim, in_channels, *patch_size = patch.shape
    if dim % shape.head_dim:
        raise ImportRefused(f"model width {dim} is not a multiple of the head size {shape.head_dim}")
    layers = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    proj1 = state["audio_emb.proj1.weight"]
    audio_in = proj1.shape[1]
    per_layer = shape.audio_window * shape.audio_layers
    if audio_in % per_layer:
        raise ImportRefused(f"audio_emb.proj1 takes {audio_in} features, not a window of {shape.audio_window} x "
                            f"{shape.audio_layers} layers")  # fmt: skip
    backbone = {
        "patch_size": tuple(patch_size), "num_attention_heads": dim // shape.head_dim, "attention_head_dim": shape.head_dim,
        "in_channels": in_channels, "out_channels": state["head.head.weight"].shape[0] // math.prod(patch_size),
        "text_dim": state["text_embedding.0.weight"].shape[1], "freq_dim": state["time_embedding.0.weight"].shape[1],
        "ffn_dim": state["blocks.0.ffn.0.weight"].shape[0], "num_layers": layers,
        "image_dim": state["img_emb.proj.0.weight"].shape[0], "added_kv_proj_dim": dim,
    }  # fmt: skip
    adapter = {
        "dim": dim, "num_layers": layers, "audio_layers": shape.audio_layers, "audio_channels": audio_in // per_layer,
        "face_channels": state["audio_ref_emb.proj.0.weight"].shape[0], "audio_window": shape.audio_window,
        "audio_tokens": state["audio_emb.proj3.weight"].shape[0] // dim, "audio_hidden": proj1.shape[0],
    }  # fmt: skip
    return backbone, adapter


def split_state_dict(state: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    parts: dict[str, dict[str, torch.Tensor]] = {"transformer": {}, "adapter": {}}
    for name, tensor in state.items():
        part, ours = official_name(name)
        parts[part][ours] = tensor
    return parts


def import_checkpoint(path: str | Path, out: str | Path, encoders: ModelConfig, shape: ImportShape = ImportShape()) -> dict:
    """Write the model folder `out` (atomically, through model.folder)."""
    state = load_state_dict(path)
    refuse_other_layouts(state)
    backbone_kwargs, adapter_kwargs = shapes_of(state, shape)
    parts = split_state_dict(state)
    with torch.device("meta"):
        backbone = WanTransformer3DModel(**backbone_kwargs)
        adapter = IdentityAdapter(**adapter_kwargs)
    for module, part in ((backbone, "transformer"), (adapter, "adapter")):
        expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        got = {k: tuple(v.shape) for k, v in parts[part].items()}
        wrong = [f"{k} {got[k]} (expected {expected[k]})" for k in got.keys() & expected.keys() if got[k] != expected[k]]
        missing, extra = sorted(expected.keys() - got.keys()), sorted(got.keys() - expected.keys())
        if wrong or missing or extra:
            raise ImportRefused(f"{part}: missing {missing[:5]}, unexpected {extra[:5]}, shape mismatch {wrong[:5]}")
        module.load_state_dict(parts[part], strict=True, assign=True)
    out = Path(out)
    if (out / "transformer" / "config.json").is_file():
        raise ImportRefused(f"{out} already holds a model; choose another --out or remove it")
    save_model_folder(IdentityAwareDiT(backbone, adapter), encoders, out)
    counts = {part: len(tensors) for part, tensors in parts.items()}
    params = sum(t.numel() for t in state.values())
    return {"out": str(out), "tensors": counts, "parameters": params, "backbone": backbone_kwargs, "adapter": adapter_kwargs}
