"""Training configuration: one YAML file per model shape (configs/tiny.yaml, 1.3B, 14B), in
sections `model`, `data` and `train`, validated (an unknown key is an error that names it)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackboneConfig(_Section):
    """diffusers WanTransformer3DModel arguments (image-to-video: 36 input channels)."""

    patch_size: tuple[int, int, int] = (1, 2, 2)
    num_attention_heads: int = 12
    attention_head_dim: int = 128
    in_channels: int = 36
    out_channels: int = 16
    text_dim: int = 4096
    freq_dim: int = 256
    ffn_dim: int = 8960
    num_layers: int = 30
    image_dim: int | None = 1280
    added_kv_proj_dim: int | None = 1536
    rope_max_seq_len: int = 1024


class EncoderConfig(_Section):
    """A frozen encoder: a pretrained folder (diffusers / transformers layout), or, for tests
    and tiny runs, a config of a randomly initialised one."""

    pretrained: str | None = None
    random_config: dict = Field(default_factory=dict)


class ModelConfig(_Section):
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    pretrained: str | None = Field(None, description="Folder with transformer/ (and adapter/) to start from.")
    vae: EncoderConfig = Field(default_factory=EncoderConfig)
    audio_encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    face_encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    audio_window: int = 5
    audio_tokens: int = 32
    audio_hidden: int = 512
    text_tokens: int = 16  # null text: the shards carry transcripts, not captions


class DataConfig(_Section):
    height: int = 480
    width: int = 832
    frames: int = 81
    stage: Literal[1, 2] = 1
    composite_share: float = Field(0.5, ge=0, le=1, description="Stage 1: share of composites (rest: single).")
    batch_size: int = 1
    num_workers: int = 2
    shuffle_buffer: int = 64
    seed: int = 0


class TrainConfig(_Section):
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    trainable: Literal["adapter", "all"] = Field("adapter", description="adapter: AFCA and projections only.")
    audio_dropout: float = 0.1
    text_dropout: float = 0.1
    timestep_shift: float = 5.0
    precision: str = Field("bf16-mixed", description="Used on GPU; CPU runs in 32-true.")
    checkpoint_every: int = 50


class RunConfig(_Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


def load_run_config(path: str | Path) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"training config not found: {path}")
    try:
        return RunConfig.model_validate(yaml.safe_load(path.read_text()) or {})
    except ValidationError as exc:
        problems = [
            f"unknown key '{'.'.join(map(str, e['loc']))}'" if e["type"] == "extra_forbidden"
            else f"'{'.'.join(map(str, e['loc']))}': {e['msg']}"
            for e in exc.errors()
        ]  # fmt: skip
        raise ValueError(f"{path}: " + "; ".join(problems)) from None
