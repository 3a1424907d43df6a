"""The frozen encoders, loaded with `from_pretrained` from local folders: Wan's VAE
(diffusers `AutoencoderKLWan`), wav2vec2 (transformers `Wav2Vec2Model`, all hidden layers) and
an image encoder for faces and the reference frame (transformers `CLIPVisionModel`; Wan ships
CLIP ViT-H as `image_encoder/`). A config without a folder builds a randomly initialised one
(tiny runs and tests), which saves and reloads in the same formats."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLWan
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel, Wav2Vec2Config, Wav2Vec2Model

from model.config import EncoderConfig, ModelConfig
from model.projections import audio_windows

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _random(build):
    """A random encoder, the same in every process (shard-time encoding and training must agree)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build()


def load_vae(config: EncoderConfig) -> AutoencoderKLWan:
    if config.pretrained:
        return AutoencoderKLWan.from_pretrained(config.pretrained)
    return _random(lambda: AutoencoderKLWan(**config.random_config))


def load_audio_encoder(config: EncoderConfig) -> Wav2Vec2Model:
    if config.pretrained:
        return Wav2Vec2Model.from_pretrained(config.pretrained)
    return _random(lambda: Wav2Vec2Model(Wav2Vec2Config(**config.random_config)))


def load_face_encoder(config: EncoderConfig) -> CLIPVisionModel:
    if config.pretrained:
        return CLIPVisionModel.from_pretrained(config.pretrained)
    return _random(lambda: CLIPVisionModel(CLIPVisionConfig(**config.random_config)))


class FrozenEncoders(nn.Module):
    """Pixels, audio and faces to what the DiT consumes; no gradients, eval mode always."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.vae = load_vae(config.vae)
        self.audio = load_audio_encoder(config.audio_encoder)
        self.face = load_face_encoder(config.face_encoder)
        self.window = config.audio_window
        self.requires_grad_(False)
        self.eval()
        z = self.vae.config.z_dim
        self.register_buffer("latent_mean", torch.tensor(self.vae.config.latents_mean[:z]).view(1, z, 1, 1, 1), False)
        self.register_buffer("latent_std", torch.tensor(self.vae.config.latents_std[:z]).view(1, z, 1, 1, 1), False)

    def train(self, mode: bool = True) -> FrozenEncoders:
        return super().train(False)

    @property
    def audio_layers(self) -> int:
        return self.audio.config.num_hidden_layers

    @property
    def audio_channels(self) -> int:
        return self.audio.config.hidden_size

    @property
    def image_channels(self) -> int:
        return self.face.config.hidden_size

    @torch.no_grad()
    def latents(self, video: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, 3, H, W) -> normalised latents (B, z, 1 + (T-1)/4, H/8, W/8)."""
        x = video.permute(0, 2, 1, 3, 4).float().div(127.5).sub(1.0)
        mean = self.vae.encode(x).latent_dist.mode()
        return (mean - self.latent_mean) / self.latent_std

    @torch.no_grad()
    def reference_condition(self, video: torch.Tensor) -> torch.Tensor:
        """Wan image-to-video conditioning: 4 mask channels (first frame known) and the latents
        of the first frame followed by black frames: (B, 4 + z, f, h, w)."""
        first = video[:, :1]
        rest = torch.full_like(video[:, 1:], 128)  # mid-grey = 0 after scaling
        ref = self.latents(torch.cat([first, rest], dim=1))
        b, _, f, h, w = ref.shape
        t = video.shape[1]
        known = torch.zeros(b, t + 3, h, w, device=ref.device)
        known[:, :4] = 1.0  # the first frame stands for 4 (the VAE's temporal stride)
        mask = known.view(b, f, 4, h, w).transpose(1, 2)
        return torch.cat([mask.to(ref.dtype), ref], dim=1)

    @torch.no_grad()
    def audio_windows(self, audio: torch.Tensor, frames: int) -> torch.Tensor:
        """(B, N, S) 16 kHz -> (B, N, T, window, L, C): every hidden layer of wav2vec2 (not the
        input embeddings), at the video rate, a window of frames per video frame."""
        b, n, s = audio.shape
        flat = audio.reshape(b * n, s)
        flat = (flat - flat.mean(-1, keepdim=True)) / (flat.std(-1, keepdim=True) + 1e-7)
        hidden = self.audio(flat, output_hidden_states=True).hidden_states[1:]
        stacked = torch.stack(hidden, dim=1)  # (BN, L, S', C)
        return audio_windows(stacked, frames, self.window).reshape(b, n, frames, self.window, *stacked.shape[1:2],
                                                                    stacked.shape[-1])  # fmt: skip

    @torch.no_grad()
    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (..., 3, H, W) -> CLIP vision tokens (..., K, C) (last hidden state)."""
        lead = images.shape[:-3]
        size = self.face.config.image_size
        x = F.interpolate(images.reshape(-1, *images.shape[-3:]).float() / 255.0, size=(size, size),
                          mode="bilinear", align_corners=False)  # fmt: skip
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        tokens = self.face(pixel_values=(x - mean) / std).last_hidden_state
        return tokens.reshape(*lead, *tokens.shape[1:])
