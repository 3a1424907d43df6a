"""The frozen encoders, loaded with `from_pretrained` from local folders: Wan's VAE (diffusers
`AutoencoderKLWan`), wav2vec2 (transformers `Wav2Vec2Model`, all hidden layers) and the image
encoder for faces and the reference frame (transformers `CLIPVisionModel`; Wan ships CLIP ViT-H
as `image_encoder/`). A config without a folder builds a randomly initialised one (tiny runs and
tests), which saves and reloads in the same formats. They prepare inputs as AnyTalker's
inference does (../shared/anytalker/README.md, "How their inference prepares inputs")."""

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
MASK_CHANNELS = 4  # Wan image-to-video: the first frame stands for 4 (the VAE's temporal stride)


def seeded(build):
    """A random encoder, the same in every process (shard-time encoding and training must agree)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build()


def load_vae(config: EncoderConfig) -> AutoencoderKLWan:
    if config.pretrained:
        return AutoencoderKLWan.from_pretrained(config.pretrained)
    return seeded(lambda: AutoencoderKLWan(**config.random_config))


def load_audio_encoder(config: EncoderConfig) -> Wav2Vec2Model:
    if config.pretrained:
        return Wav2Vec2Model.from_pretrained(config.pretrained)
    return seeded(lambda: Wav2Vec2Model(Wav2Vec2Config(**config.random_config)))


def load_face_encoder(config: EncoderConfig) -> CLIPVisionModel:
    if config.pretrained:
        return CLIPVisionModel.from_pretrained(config.pretrained)
    return seeded(lambda: CLIPVisionModel(CLIPVisionConfig(**config.random_config)))


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
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents (B, z, f, h, w) -> uint8 video (B, 4(f-1)+1, H, W, 3)."""
        x = self.vae.decode(latents * self.latent_std + self.latent_mean).sample
        return x.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1)

    @torch.no_grad()
    def reference_latents(self, first: torch.Tensor, frames: int) -> torch.Tensor:
        """uint8 (B, 3, H, W) reference image -> latents of it followed by frames-1 zero frames:
        (B, z, f, h, w), the 16 latent channels of Wan's image-to-video condition."""
        b, _, h, w = first.shape
        x = torch.zeros(b, 3, frames, h, w, device=first.device)  # zeros in the VAE's [-1, 1] space
        x[:, :, 0] = first.float().div(127.5).sub(1.0)
        mean = self.vae.encode(x).latent_dist.mode()
        return (mean - self.latent_mean) / self.latent_std

    @staticmethod
    def condition(reference: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Wan's image-to-video condition y with AnyTalker's mask channels: (B, 4 + z, f, h, w).
        The 4 mask channels are 1 on latent frame 0 (the known first frame) and, on later frames,
        the sum of the identities' expanded face masks (B, N, h', w') resized to the latent grid."""
        b, _, f, h, w = reference.shape
        faces = F.interpolate(masks.sum(1, keepdim=True).float(), size=(h, w), mode="nearest")  # (B, 1, h, w)
        mask = faces[:, :, None].expand(b, MASK_CHANNELS, f, h, w).clone()
        mask[:, :, 0] = 1.0
        return torch.cat([mask.to(reference.dtype), reference], dim=1)

    @torch.no_grad()
    def audio_windows(self, audio: torch.Tensor, frames: int) -> torch.Tensor:
        """(B, N, S) 16 kHz -> (B, N, frames, window, L, C). As AnyTalker: normalise each track
        (wav2vec2's feature extractor), interpolate the CNN features linearly to `frames` video
        frames BEFORE the feature projection and the transformer (so it runs at the video rate),
        stack hidden states 1..L (not the input embeddings), and take a window per frame."""
        b, n, s = audio.shape
        flat = audio.reshape(b * n, s).float()
        flat = (flat - flat.mean(-1, keepdim=True)) / torch.sqrt(flat.var(-1, keepdim=True) + 1e-7)
        cnn = self.audio.feature_extractor(flat)  # (BN, C_cnn, S')
        cnn = F.interpolate(cnn, size=frames, mode="linear", align_corners=True)
        hidden, _ = self.audio.feature_projection(cnn.transpose(1, 2))
        encoder = self.audio.encoder
        hidden = hidden + encoder.pos_conv_embed(hidden)
        stable = self.audio.config.do_stable_layer_norm
        if not stable:
            hidden = encoder.layer_norm(hidden)
        states = []
        for layer in encoder.layers:
            hidden = layer(hidden)
            states.append(hidden)
        if stable:  # the final norm belongs to the last layer's output
            states[-1] = encoder.layer_norm(states[-1])
        stacked = torch.stack(states, dim=1)  # (BN, L, frames, C)
        return audio_windows(stacked, self.window).reshape(b, n, frames, self.window, *stacked.shape[1:2],
                                                           stacked.shape[-1])  # fmt: skip

    @torch.no_grad()
    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (..., 3, H, W) -> image-encoder tokens (..., K, C): the crop squashed to the
        encoder's size with bicubic resampling, OpenAI mean/std, the penultimate hidden state
        (Wan's and AnyTalker's CLIP features: the output after all but the last block)."""
        lead = images.shape[:-3]
        size = self.face.config.image_size
        x = F.interpolate(images.reshape(-1, *images.shape[-3:]).float() / 255.0, size=(size, size),
                          mode="bicubic", align_corners=False).clamp(0, 1)  # fmt: skip
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        tokens = self.face(pixel_values=(x - mean) / std, output_hidden_states=True).hidden_states[-2]
        return tokens.reshape(*lead, *tokens.shape[1:])
