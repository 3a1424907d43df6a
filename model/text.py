"""Text conditioning: umT5 embeddings padded with zeros to 512 tokens, as Wan and AnyTalker
compute them (the model attends to all 512; diffusers' Wan attention also assumes this length).

umT5-XXL is a 5.7 B-parameter encoder and training needs only three prompts (the null prompt
for condition dropout, the talking prompt every sample gets, the negative prompt generation
uses), so they are embedded once and cached on disk, keyed by the encoder and the prompt text;
no training step runs umT5.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer, ByT5Tokenizer, UMT5Config, UMT5EncoderModel

from model.config import ModelConfig, TextEncoderConfig
from model.encoders import seeded

TEXT_TOKENS = 512
CACHE_ENV = "ANYTALKER_CACHE"


def load_text_encoder(config: TextEncoderConfig) -> tuple[UMT5EncoderModel, object]:
    """umT5 and its tokenizer from folders (a Wan diffusers folder's `text_encoder/` and
    `tokenizer/`); a random config gets the byte-level T5 tokenizer, which needs no files."""
    if config.pretrained:
        encoder = UMT5EncoderModel.from_pretrained(config.pretrained)
        tokenizer = AutoTokenizer.from_pretrained(config.tokenizer or Path(config.pretrained).parent / "tokenizer")
    else:
        encoder = seeded(lambda: UMT5EncoderModel(UMT5Config(**config.random_config)))
        tokenizer = AutoTokenizer.from_pretrained(config.tokenizer) if config.tokenizer else ByT5Tokenizer()
    return encoder.eval().requires_grad_(False), tokenizer


@torch.no_grad()
def embed_prompts(encoder: UMT5EncoderModel, tokenizer, prompts: list[str]) -> torch.Tensor:
    """(P, 512, d): each prompt's token embeddings, zeros after its last token."""
    batch = tokenizer(prompts, padding="max_length", max_length=TEXT_TOKENS, truncation=True,
                      add_special_tokens=True, return_attention_mask=True, return_tensors="pt")  # fmt: skip
    hidden = encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
    return hidden * batch.attention_mask[..., None].to(hidden.dtype)


def _cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "anytalker") / "prompts"


def _cache_key(config: ModelConfig) -> str:
    encoder = config.text_encoder
    where = encoder.pretrained
    if where:  # the same folder with other weights is another encoder
        weights = sorted(Path(where).glob("*.safetensors")) + sorted(Path(where).glob("*.bin"))
        where = [str(Path(where).resolve()), [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in weights]]
    spec = {"encoder": where, "random": encoder.random_config, "tokenizer": encoder.tokenizer,
            "prompts": config.prompts.model_dump()}  # fmt: skip
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]


def prompt_embeddings(config: ModelConfig, cache_dir: str | Path | None = None) -> dict[str, torch.Tensor]:
    """{"null", "talking", "negative"} -> (512, d) float32, from the cache or computed once and
    written there atomically (two workers computing at once both write the same file)."""
    folder = Path(cache_dir) if cache_dir else _cache_dir()
    path = folder / f"{_cache_key(config)}.safetensors"
    if path.is_file():
        return load_file(path)
    names = list(config.prompts.model_dump())
    encoder, tokenizer = load_text_encoder(config.text_encoder)
    embedded = embed_prompts(encoder, tokenizer, [getattr(config.prompts, k) for k in names]).float()
    tensors = {k: embedded[i].contiguous() for i, k in enumerate(names)}
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
    os.close(fd)
    save_file(tensors, tmp)
    os.replace(tmp, path)
    return tensors

