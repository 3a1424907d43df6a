"""Generation cost: measured for the tiny config on this machine's CPU, and an analytic estimate
of parameters, FLOPs and training activation memory for the 1.3B and 14B shapes.

    .venv/bin/python benchmarks/generate.py [--steps 4] [--size 96x64] [--frames 81] [--identities 2]

Measured: seconds per sampling step (one step = the conditional and unconditional passes as one
batch of two), VAE decode time and the process's peak resident memory. Analytic (printed as a
table): parameters counted on models built on the meta device; forward FLOPs per pass at
81x480x832 (21x30x52 = 32,760 video tokens, 512 text, 257 image, N identities whose masks cover
`--mask-share` of the frame each, 257 face + 32 audio tokens per video frame); a sampling step
is 2 passes (guidance), a training step about 3 (forward + backward; 4 with gradient
checkpointing); activation memory for training in bf16, with and without checkpointing, from the
tensors a block keeps for backward (flash attention: no L x L matrix).
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def measure_tiny(steps: int, size: tuple[int, int], frames: int, identities: int) -> None:
    import tempfile

    import numpy as np

    from model.config import load_run_config
    from model.folder import init_model
    from model.pipeline import TalkingVideoPipeline

    with tempfile.TemporaryDirectory() as tmp:
        init_model(load_run_config(ROOT / "configs" / "tiny.yaml"), Path(tmp) / "tiny")
        pipeline = TalkingVideoPipeline.from_pretrained(Path(tmp) / "tiny")
    w, h = size
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    crops = [image[: h // 2, i * w // identities : (i + 1) * w // identities] for i in range(identities)]
    masks = np.zeros((identities, h // 16, w // 16), np.float32)
    for i in range(identities):
        masks[i, :, i * (w // 16) // identities : (i + 1) * (w // 16) // identities] = 1
    tracks = (0.1 * rng.standard_normal((identities, int(frames / 24 * 16000)))).astype(np.float32)
    start = time.perf_counter()
    cond = pipeline.prepare(image, crops, masks, tracks, "two people talking", frames)
    prepare_s = time.perf_counter() - start
    z = pipeline.encoders.vae.config.z_dim
    latents = torch.randn(1, z, *cond.y.shape[2:])
    with torch.no_grad():
        x = torch.cat([torch.cat([latents, latents]), torch.cat([cond.y, cond.y])], dim=1)
        two = lambda t: torch.cat([t, t])  # noqa: E731
        args = (torch.cat([cond.text, cond.negative]), two(cond.image), two(cond.audio), two(cond.faces), two(cond.masks))
        pipeline.model(x, torch.tensor([500.0, 500.0]), *args)  # warm-up
        start = time.perf_counter()
        for _ in range(steps):
            pipeline.model(x, torch.tensor([500.0, 500.0]), *args)
        step_s = (time.perf_counter() - start) / steps
        start = time.perf_counter()
        pipeline.encoders.decode(latents)
        decode_s = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"tiny config on CPU ({torch.get_num_threads()} threads), {frames} frames at {w}x{h}, {identities} identities:")
    print(f"  prepare (VAE encode, wav2vec2, CLIP) {prepare_s:.2f} s; sampling step (2 passes) {step_s * 1e3:.1f} ms; "
          f"VAE decode {decode_s:.2f} s; peak RSS {peak:.0f} MiB")  # fmt: skip


def shape_params(name: str) -> tuple[int, int, dict]:
    from diffusers import WanTransformer3DModel

    from model.config import load_run_config
    from model.dit import IdentityAdapter

    backbone = load_run_config(ROOT / "configs" / f"{name}.yaml").model.backbone
    dim = backbone.num_attention_heads * backbone.attention_head_dim
    with torch.device("meta"):
        wan = WanTransformer3DModel(**backbone.model_dump())
        adapter = IdentityAdapter(dim=dim, num_layers=backbone.num_layers, audio_layers=12, audio_channels=768, face_channels=1280)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return count(wan), count(adapter), {"dim": dim, "layers": backbone.num_layers, "ffn": backbone.ffn_dim}


def forward_flops(dim: int, layers: int, ffn: int, tokens: int, identities: int, mask_share: float, frames: int) -> float:
    """Multiply-adds x 2 of one forward pass (projections, attention, feed-forward, AFCA)."""
    text, image, face, audio_per_frame = 512, 257, 257, 32
    per_block = (
        2 * 4 * tokens * dim * dim  # self-attention q, k, v, o
        + 2 * 2 * 2 * tokens * tokens * dim  # self-attention scores and values
        + 2 * 2 * tokens * dim * dim  # cross-attention q and o
        + 2 * 2 * (text + image) * dim * dim  # text and image k, v
        + 2 * 2 * 2 * tokens * (text + image) * dim  # text and image attention
        + 2 * 2 * identities * (face + audio_per_frame * frames) * dim * dim  # AFCA face/audio k, v
        + 2 * 2 * 2 * identities * mask_share * tokens * (face + 4 * audio_per_frame) * dim  # AFCA attention
        + 2 * 2 * tokens * dim * ffn  # feed-forward
    )
    return layers * per_block


def activation_bytes(dim: int, layers: int, ffn: int, tokens: int, checkpointing: bool) -> float:
    """bf16 tensors kept for backward per sample: about 12 x dim + 2 x ffn values per token and
    block (norm outputs, q/k/v/attention outputs of both attentions, residuals, FFN hidden and
    its GELU); with checkpointing only each block's input plus one block's worth."""
    per_block = tokens * (12 * dim + 2 * ffn) * 2
    return (layers * tokens * dim * 2 + per_block) if checkpointing else layers * per_block


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", default="96x64", help="tiny run: WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--identities", type=int, default=2)
    parser.add_argument("--mask-share", type=float, default=0.3, help="share of the frame each face mask covers")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    measure_tiny(args.steps, (w, h), args.frames, args.identities)
    tokens, frames = 21 * 30 * 52, 81
    print(f"\nanalytic, 81x480x832 ({tokens} video tokens), N={args.identities}, masks {args.mask_share:.0%} of the frame each")
    print(f"{'shape':6} {'Wan params':>11} {'AnyTalker':>10} {'TFLOP/pass':>11} {'TFLOP/sample step':>18} "
          f"{'TFLOP/train step':>17} {'act. GiB':>9} {'act. GiB ckpt':>14}")  # fmt: skip
    for name in ("1.3B", "14B"):
        wan, adapter, s = shape_params(name)
        flops = forward_flops(s["dim"], s["layers"], s["ffn"], tokens, args.identities, args.mask_share, frames)
        act = activation_bytes(s["dim"], s["layers"], s["ffn"], tokens, False) / 2**30
        act_ckpt = activation_bytes(s["dim"], s["layers"], s["ffn"], tokens, True) / 2**30
        print(f"{name:6} {wan / 1e9:10.2f}B {adapter / 1e9:9.2f}B {flops / 1e12:11.1f} {2 * flops / 1e12:18.1f} "
              f"{3 * flops / 1e12:17.1f} {act:9.1f} {act_ckpt:14.1f}")  # fmt: skip
    print("a 40-step 1.3B clip is 80 passes; at 40% MFU of an H100/H200's ~990 dense bf16 TFLOP/s that is "
          f"~{80 * forward_flops(1536, 30, 8960, tokens, args.identities, args.mask_share, frames) / (0.4 * 990e12):.0f} s "
          "of DiT time (estimate, not measured here: no GPU on this machine)")  # fmt: skip


if __name__ == "__main__":
    main()
