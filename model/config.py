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


class TextEncoderConfig(EncoderConfig):
    """umT5 (transformers `UMT5EncoderModel`) and its tokenizer folder; a random config uses the
    byte-level T5 tokenizer, which needs no files."""

    tokenizer: str | None = None


# Wan's negative prompt, the one its image-to-video pipelines default to, and an English clause for
# what AnyTalker's negative prompt penalises (bad lip sync, jittery eyes).
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，残缺的，"
    "多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走"
    ", lips out of sync with the speech, mouth not moving while speaking, jittery eyes, flickering face"
)


class PromptsConfig(_Section):
    """The few prompts training and generation need; their umT5 embeddings are computed once and
    cached (model/text.py). The shards carry transcripts, not captions: every training sample
    gets `talking`, and condition dropout gets `null`."""

    null: str = ""
    talking: str = "A person is talking to the camera, with natural lip movements matching the speech."
    negative: str = WAN_NEGATIVE_PROMPT


class ModelConfig(_Section):
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    pretrained: str | None = Field(None, description="Folder with transformer/ (and adapter/) to start from.")
    vae: EncoderConfig = Field(default_factory=EncoderConfig)
    text_encoder: TextEncoderConfig = Field(default_factory=TextEncoderConfig)
    audio_encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    face_encoder: EncoderConfig = Field(default_factory=EncoderConfig)
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    fps: float = Field(24.0, gt=0, description="Video frame rate the model is trained and samples at (AnyTalker: 24).")
    audio_window: int = 5
    audio_tokens: int = 32
    audio_hidden: int = 512


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
    gradient_checkpointing: bool = Field(False, description="Recompute blocks in backward (needed for 14B).")
    val_batches: int = Field(4, ge=0, description="Validation batches per check (0: no validation).")
    val_timesteps: tuple[float, ...] = Field(
        (0.25, 0.5, 0.75), description="Validation loss at these fixed t, with fixed noise seeds: comparable across runs."
    )


class RunConfig(_Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)


MODEL_CONFIG_FILE = "anytalker.yaml"


def write_model_config(folder: str | Path, config: ModelConfig) -> None:
    """The encoders, prompts and frame rate a model folder (transformer/, adapter/) runs with."""
    data = config.model_dump(mode="json", exclude={"backbone", "pretrained"})
    Path(folder).mkdir(parents=True, exist_ok=True)
    Path(folder, MODEL_CONFIG_FILE).write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def read_model_config(folder: str | Path) -> ModelConfig:
    """The ModelConfig of a model folder; a clear error when the folder is not one."""
    folder = Path(folder)
    missing = [p for p in ("transformer/config.json", "adapter/config.json", MODEL_CONFIG_FILE) if not (folder / p).is_file()]
    if missing:
        raise ValueError(
            f"{folder} is not a model folder (missing {', '.join(missing)}): make one with `anytalker model import` "
            "or `anytalker model init`, or use a training run's model/ folder"
        )
    data = yaml.safe_load((folder / MODEL_CONFIG_FILE).read_text()) or {}
    return ModelConfig.model_validate({**data, "pretrained": str(folder)})


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
