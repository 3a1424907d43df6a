"""AFCA time with 1-4 identities, packed (ours) against the paper's per-identity loop, alone and
inside a whole DiT block (self-attention, text/image cross attention, AFCA, feed-forward).

    .venv/bin/python benchmarks/afca.py [--dim 256] [--heads 4] [--size 480x832] [--frames 21]
        [--block-size 240x416]

Inputs are the shape of a composite: N faces side by side, each mask an expanded face box
(a third of its place's width, most of the height), 257 face tokens, video tokens on the patched latent grid
(480x832 -> 30x52, 21 latent frames for 81 video frames), 32 audio tokens per video frame.
Prints the median time of each, and ratios to one identity.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from model.afca import AudioFaceKV, afca_loop, afca_packed


def inputs(n: int, dim: int, grid: tuple[int, int, int], generator: torch.Generator):
    f, h, w = grid
    t = 4 * (f - 1) + 1
    x = torch.randn(1, f * h * w, dim, generator=generator)
    face = torch.randn(1, n, 257, dim, generator=generator)
    audio = torch.randn(1, n, t, 32, dim, generator=generator)
    masks = torch.zeros(1, n, h, w)
    place = w / n
    for i in range(n):
        cx = int((i + 0.5) * place)
        half = max(1, int(place / 6 * 1.4))
        masks[0, i, int(0.1 * h) : int(0.8 * h), max(0, cx - half) : cx + half] = 1.0
    return x, grid, face, audio, masks


def timed(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--size", default="480x832")
    parser.add_argument("--frames", type=int, default=21, help="latent frames")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--block-size", default="240x416", help="video size for the whole-block timing")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    grid = (args.frames, height // 16, width // 16)
    kv = AudioFaceKV(args.dim).eval()
    g = torch.Generator().manual_seed(0)
    print(f"grid {grid} ({grid[0] * grid[1] * grid[2]} tokens), dim {args.dim}, {torch.get_num_threads()} threads")
    base = {}
    with torch.no_grad():
        for n in (1, 2, 3, 4):
            batch = inputs(n, args.dim, grid, g)
            packed = timed(lambda: afca_packed(batch[0], kv, args.heads, *batch[1:]), args.repeats)
            loop = timed(lambda: afca_loop(batch[0], kv, args.heads, *batch[1:]), args.repeats)
            base.setdefault("packed", packed)
            base.setdefault("loop", loop)
            print(f"N={n}: packed {packed * 1e3:8.1f} ms ({packed / base['packed']:.2f}x N=1)   "
                  f"paper's loop {loop * 1e3:8.1f} ms ({loop / base['loop']:.2f}x N=1)   loop/packed {loop / packed:.1f}x")
        block_time(args, g)


def block_time(args, generator: torch.Generator) -> None:
    """One Wan block (diffusers' pieces in our block loop, AFCA inside the cross attention): the
    whole forward, N = 1..4, with 512 text tokens and 257 image tokens as the released model has."""
    from diffusers import WanTransformer3DModel

    from model.dit import IdentityAdapter, IdentityAwareDiT

    height, width = (int(v) for v in args.block_size.split("x"))
    f, h, w = args.frames, height // 8, width // 8
    head_dim = args.dim // args.heads
    backbone = WanTransformer3DModel(num_attention_heads=args.heads, attention_head_dim=head_dim, in_channels=36,
                                     out_channels=16, text_dim=64, freq_dim=64, ffn_dim=4 * args.dim, num_layers=1,
                                     image_dim=64, added_kv_proj_dim=args.dim)  # fmt: skip
    adapter = IdentityAdapter(args.dim, 1, audio_layers=4, audio_channels=32, face_channels=64)
    model = IdentityAwareDiT(backbone, adapter).eval()
    t = 4 * (f - 1) + 1
    print(f"whole block at {height}x{width} ({f * h * w // 4} tokens), dim {args.dim}:")
    base = None
    with torch.no_grad():
        for n in (1, 2, 3, 4):
            _, _, _, _, masks = inputs(n, 8, (f, h // 2, w // 2), generator)
            batch = (torch.randn(1, 36, f, h, w, generator=generator), torch.tensor([500.0]),
                     torch.randn(1, 512, 64, generator=generator), torch.randn(1, 257, 64, generator=generator),
                     torch.randn(1, n, t, 5, 4, 32, generator=generator), torch.randn(1, n, 257, 64, generator=generator),
                     masks)  # fmt: skip
            took = timed(lambda: model(*batch), max(1, args.repeats - 1))
            base = base or took
            print(f"N={n}: block {took * 1e3:8.1f} ms ({took / base:.2f}x N=1)")


if __name__ == "__main__":
    main()
