"""A model folder, what generation and evaluation load: `transformer/` (diffusers
`WanTransformer3DModel`), `adapter/` (`IdentityAdapter`) and `anytalker.yaml` (the encoder
folders, prompts and frame rate it runs with). Written into a temporary folder beside the
target and renamed, so a reader never sees half a model."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import torch

from model.config import ModelConfig, RunConfig, write_model_config
from model.dit import IdentityAwareDiT


def save_model_folder(model: IdentityAwareDiT, config: ModelConfig, out: str | Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        write_model_config(tmp, config)
        if out.exists():  # a rerun replaces the folder it wrote before
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def init_model(config: RunConfig, out: str | Path, seed: int = 0) -> Path:
    """A randomly initialised model of the config's shape, every layer live (AFCA values too):
    for smoke runs of generation and evaluation, and for tests, in the real formats."""
    from model.encoders import FrozenEncoders
    from model.flow_matching import build_model

    torch.manual_seed(seed)
    model = build_model(config.model_copy(update={"model": config.model.model_copy(update={"pretrained": None})}),
                        FrozenEncoders(config.model))  # fmt: skip
    for kv in model.adapter.afca:
        for linear in (kv.v_face, kv.v_audio):
            torch.nn.init.normal_(linear.weight, std=linear.in_features**-0.5)
    return save_model_folder(model, config.model, out)
