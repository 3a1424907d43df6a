"""Generation with the identity-aware DiT, as AnyTalker samples (../shared/anytalker/README.md):
flow-matching UniPC (order 2, bh2, predicting x0, final sigma 0, shift 3.0), one guidance scale
for text and audio together (4.5), whose unconditional pass has the negative prompt and all-zero
audio windows while face tokens, image tokens, the condition y and the masks stay the same.

`TalkingVideoPipeline.prepare` turns an image, face boxes and per-identity tracks into the
`Conditions` the sampler passes to the model; `sample` runs the sampler and decodes with the
VAE. Inputs at the pixel level (decoding, face detection, masks, muxing) are
tasks/evaluation/generation_inputs.py's work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import UniPCMultistepScheduler
from tqdm.auto import tqdm

from model.config import ModelConfig, read_model_config
from model.dit import IdentityAwareDiT
from model.encoders import FrozenEncoders
from model.text import embed_prompts, load_text_encoder, prompt_embeddings

DEFAULT_STEPS = 40
DEFAULT_GUIDANCE = 4.5
DEFAULT_SHIFT = 3.0


@dataclass
class Conditions:
    """Everything the sampler passes to the model besides the noisy latents and the timestep."""

    y: torch.Tensor  # (1, 4 + z, f, h, w) mask channels + reference latents
    text: torch.Tensor  # (1, 512, text_dim)
    negative: torch.Tensor  # (1, 512, text_dim)
    image: torch.Tensor | None  # (1, K, C) reference-image tokens
    audio: torch.Tensor  # (1, N, F, window, L, C) one identity per track, left to right
    faces: torch.Tensor  # (1, N, K, C) face tokens, left to right
    masks: torch.Tensor  # (1, N, h/p, w/p)
    frames: int


def flow_unipc(shift: float = DEFAULT_SHIFT) -> UniPCMultistepScheduler:
    return UniPCMultistepScheduler(
        num_train_timesteps=1000, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift,
        solver_order=2, solver_type="bh2", predict_x0=True, final_sigmas_type="zero",
    )  # fmt: skip


class TalkingVideoPipeline:
    def __init__(self, model: IdentityAwareDiT, encoders: FrozenEncoders, config: ModelConfig) -> None:
        self.model, self.encoders, self.config = model.eval(), encoders, config
        self._text = None

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> TalkingVideoPipeline:
        """A model folder: transformer/, adapter/ and anytalker.yaml (its encoders)."""
        config = read_model_config(folder)
        return cls(IdentityAwareDiT.from_pretrained(folder), FrozenEncoders(config), config)

    @property
    def fps(self) -> float:
        return self.config.fps

    def embed_caption(self, caption: str) -> torch.Tensor:
        """(1, 512, d); umT5 is loaded on the first caption and kept for the next."""
        if self._text is None:
            self._text = load_text_encoder(self.config.text_encoder)
        return embed_prompts(*self._text, [caption])

    @torch.no_grad()
    def prepare(self, image: np.ndarray, crops: list[np.ndarray], masks: np.ndarray, tracks: np.ndarray,
                caption: str, frames: int) -> Conditions:  # fmt: skip
        """image (H, W, 3) uint8 at the video size; crops: each identity's face (left to right);
        masks (N, H/16, W/16) soft masks; tracks (N, S) 16 kHz, one per identity, same order."""
        first = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        mask = torch.from_numpy(masks)[None].float()
        y = self.encoders.condition(self.encoders.reference_latents(first, frames), mask)
        size = self.encoders.face.config.image_size
        faces = torch.stack([F.interpolate(torch.from_numpy(np.ascontiguousarray(c)).permute(2, 0, 1)[None].float(),
                                           size=(size, size), mode="bicubic").clamp(0, 255)[0] for c in crops])  # fmt: skip
        audio_frames = max(frames, int(np.ceil(tracks.shape[1] / 16000 * self.fps)))
        audio = self.encoders.audio_windows(torch.from_numpy(tracks)[None].float(), audio_frames)[:, :, :frames]
        image_tokens = self.encoders.image_tokens(first) if self.model.backbone.config.image_dim else None
        return Conditions(
            y=y, text=self.embed_caption(caption), negative=prompt_embeddings(self.config)["negative"][None],
            image=image_tokens, audio=audio, faces=self.encoders.image_tokens(faces.round().to(torch.uint8))[None],
            masks=mask, frames=frames,
        )  # fmt: skip

    @torch.no_grad()
    def sample(self, cond: Conditions, steps: int = DEFAULT_STEPS, guidance: float = DEFAULT_GUIDANCE,
               shift: float = DEFAULT_SHIFT, seed: int = 0, progress: bool = True) -> np.ndarray:  # fmt: skip
        """The video (F, H, W, 3) uint8. Conditional and unconditional passes go through the
        model as one batch of two."""
        scheduler = flow_unipc(shift)
        scheduler.set_timesteps(steps)
        z = self.encoders.vae.config.z_dim
        shape = (1, z, *cond.y.shape[2:])
        latents = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
        two = lambda x: None if x is None else torch.cat([x, x])  # noqa: E731
        text = torch.cat([cond.text, cond.negative]).to(latents.dtype)
        audio = torch.cat([cond.audio, torch.zeros_like(cond.audio)])
        y, image, faces, masks = two(cond.y), two(cond.image), two(cond.faces), two(cond.masks)
        for t in tqdm(scheduler.timesteps, desc="sampling", unit="step", disable=not progress):
            x = torch.cat([torch.cat([latents, latents]), y.to(latents.dtype)], dim=1)
            v_cond, v_uncond = self.model(x, t.expand(2).float(), text, image, audio, faces, masks).float().chunk(2)
            velocity = v_uncond + guidance * (v_cond - v_uncond)
            latents = scheduler.step(velocity, t, latents, return_dict=False)[0]
        return self.encoders.decode(latents)[0, : cond.frames].numpy()
