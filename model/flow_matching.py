"""The LightningModule: the identity-aware DiT trained by flow matching (rectified flow), as
Wan trains, with AnyTalker's conditions.

x_t = (1 - t) x0 + t noise, the model predicts the velocity noise - x0, t is drawn uniformly
and shifted as Wan does (t' = s t / (1 + (s - 1) t)) so that training spends more steps at high
noise. Condition dropout for classifier-free guidance: null audio = zero wav2vec2 features
(face tokens kept); null text = the embedded empty prompt. Frozen encoders run inside the step, on the device
(or at shard time); text is the cached umT5 embedding of the configured talking prompt.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from diffusers import WanTransformer3DModel

from model.config import RunConfig
from model.dit import IdentityAdapter, IdentityAwareDiT
from model.encoders import FrozenEncoders
from model.text import prompt_embeddings


def shift_timesteps(t: torch.Tensor, shift: float) -> torch.Tensor:
    return shift * t / (1 + (shift - 1) * t)


def build_model(config: RunConfig, encoders: FrozenEncoders) -> IdentityAwareDiT:
    """The DiT to train: a saved model (transformer/ + adapter/), or a Wan backbone (a folder, or
    a random one of the configured shape) with a new adapter whose AFCA values are zero, so the
    identity layers contribute nothing at step 0 and the backbone is intact."""
    m = config.model
    if m.pretrained and (Path(m.pretrained) / "adapter" / "config.json").is_file():
        return IdentityAwareDiT.from_pretrained(m.pretrained)
    if m.pretrained:
        backbone = WanTransformer3DModel.from_pretrained(f"{m.pretrained}/transformer")
    else:
        backbone = WanTransformer3DModel(**m.backbone.model_dump())
    adapter = IdentityAdapter(
        dim=backbone.config.num_attention_heads * backbone.config.attention_head_dim,
        num_layers=backbone.config.num_layers, audio_layers=encoders.audio_layers,
        audio_channels=encoders.audio_channels, face_channels=encoders.image_channels,
        audio_window=m.audio_window, audio_tokens=m.audio_tokens, audio_hidden=m.audio_hidden,
    ).zero_values()  # fmt: skip
    return IdentityAwareDiT(backbone, adapter)


class TalkingVideoModule(L.LightningModule):
    def __init__(self, config: dict, prompt_cache: str | None = None) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config})
        self.config = RunConfig.model_validate(config)
        self.encoders = FrozenEncoders(self.config.model)
        self.model = build_model(self.config, self.encoders)
        if self.config.train.trainable == "adapter":
            self.model.backbone.requires_grad_(False)
        if self.config.train.gradient_checkpointing:
            self.model.enable_gradient_checkpointing()
        prompts = prompt_embeddings(self.config.model, prompt_cache)
        self.register_buffer("text_talking", prompts["talking"], persistent=False)
        self.register_buffer("text_null", prompts["null"], persistent=False)

    def conditions(self, batch: dict) -> dict:
        """Everything the DiT needs except the noisy latents, from a reader batch: the frozen
        encoders' outputs from the shards when `anytalker shards encode` stored them, else
        computed here."""
        video = batch["video"]
        b, frames = video.shape[0], video.shape[1]
        image = None
        if self.model.backbone.config.image_dim:
            image = batch.get("encoded.imagetokens")
            image = self.encoders.image_tokens(video[:, 0]) if image is None else image
        reference, audio, faces = (batch.get(f"encoded.{k}") for k in ("reference", "audiofeats", "facetokens"))
        if reference is None:
            reference = self.encoders.reference_latents(video[:, 0], video.shape[1])
        masks = batch["masks"] * batch["identity_mask"][..., None, None].to(batch["masks"].dtype)
        return {
            "reference": self.encoders.condition(reference, masks),
            "text": self.text_talking.expand(b, *self.text_talking.shape),
            "image": image,
            "audio": self.encoders.audio_windows(batch["audio"], frames) if audio is None else audio,
            "faces": self.encoders.image_tokens(batch["faces"]) if faces is None else faces,
            "masks": masks,
        }

    def encode_sample(self, batch: dict) -> dict[str, torch.Tensor]:
        """The optional shard members (shards.schema.ENCODED) for a batch of one sample."""
        cond = self.conditions(batch)
        n = int(batch["identity_mask"][0].sum())
        video = batch["video"]
        out = {
            "latents.npy": self.encoders.latents(video)[0].float(),
            "reference.npy": self.encoders.reference_latents(video[:, 0], video.shape[1])[0].float(),
            "audiofeats.npy": cond["audio"][0, :n].half(),
            "facetokens.npy": cond["faces"][0, :n].half(),
        }
        if cond["image"] is not None:
            out["imagetokens.npy"] = cond["image"][0].half()
        return out

    def flow_matching_loss(
        self, batch: dict, generator: torch.Generator | None = None, t: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The velocity loss at timesteps t (drawn and shifted when not given)."""
        c = self.config.train
        x0 = batch.get("encoded.latents")
        x0 = self.encoders.latents(batch["video"]) if x0 is None else x0
        cond = self.conditions(batch)
        b = x0.shape[0]
        device = x0.device
        if t is None:
            t = shift_timesteps(torch.rand(b, device=device, generator=generator), c.timestep_shift)
        noise = torch.randn(x0.shape, device=device, generator=generator)
        tt = t.view(b, 1, 1, 1, 1)
        xt = (1 - tt) * x0 + tt * noise
        audio = cond["audio"]
        text = cond["text"]
        if self.training:
            drop_audio = torch.rand(b, device=device) < c.audio_dropout
            audio = audio * (~drop_audio).view(b, *([1] * (audio.ndim - 1))).to(audio.dtype)
            drop_text = torch.rand(b, device=device) < c.text_dropout
            text = torch.where(drop_text.view(b, 1, 1), self.text_null.expand_as(text), text)
        latents = torch.cat([xt, cond["reference"].to(xt.dtype)], dim=1)
        pred = self.model(latents, t * 1000, text, cond["image"], audio, cond["faces"], cond["masks"])
        return F.mse_loss(pred.float(), (noise - x0).float())

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.flow_matching_loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["video"].shape[0])
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=batch["video"].shape[0])
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """The loss at each fixed t of `train.val_timesteps`, with noise seeded by the batch index
        and the timestep: the same number for the same model on the same val split, whichever
        run, step or rank computes it."""
        b = batch["video"].shape[0]
        losses = []
        for k, value in enumerate(self.config.train.val_timesteps):
            generator = torch.Generator(device=self.device).manual_seed(10_000 * batch_idx + k)
            t = torch.full((b,), value, device=self.device)
            losses.append(self.flow_matching_loss(batch, generator, t))
            self.log(f"val/loss_t{value:g}", losses[-1], batch_size=b)
        loss = torch.stack(losses).mean()
        self.log("val/loss", loss, prog_bar=True, batch_size=b)
        return loss

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        c = self.config.train
        optimizer = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)
        warmup = max(1, c.warmup_steps)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def state_dict(self, *args, **kwargs):
        """Checkpoints hold the trained model, not the frozen encoders (they load from their folders)."""
        return {k: v for k, v in super().state_dict(*args, **kwargs).items() if not k.startswith("encoders.")}

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        return super().load_state_dict(state_dict, strict=False, assign=assign)
