"""Training reader throughput against a raw sequential read of the same tars, in one run.

    .venv/bin/python benchmarks/loader.py SHARD_DIR [--split train] [--workers 0 1 2] [--size 480x832]

Prints samples per second of (a) reading the tars' bytes sequentially, (b) the same plus
decoding every member to arrays (video decode is the bulk), and (c) the WebDataset training
reader (shuffle, decode, resize to the training size, masks) through a DataLoader with each
worker count, each as a ratio to (a) and (b). Make a shard set first with `anytalker shards`
(the demo writes one to demo-work/shards).
"""

from __future__ import annotations

import argparse
import time

import torch

from shards.codec import decode_video
from shards.reader import ReaderConfig, collate, iter_raw_samples, make_dataset, raw_bytes_read
from shards.writer import shard_urls


def _decode_all(urls: list[str]) -> int:
    """Plain read plus decoding each sample's video (no resize, no tensors): the decode floor."""
    n = 0
    for _, members in iter_raw_samples(urls):
        decode_video(members["video.mp4"])
        n += 1
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shards")
    parser.add_argument("--split", default="train")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--size", default="480x832", help="training HxW")
    args = parser.parse_args()
    urls = shard_urls(args.shards, args.split)
    height, width = (int(x) for x in args.size.split("x"))
    torch.set_num_threads(1)

    start = time.perf_counter()
    samples, nbytes = raw_bytes_read(urls)
    raw_s = time.perf_counter() - start
    raw = samples / raw_s
    print(f"{len(urls)} shards, {samples} samples, {nbytes / 1e6:.1f} MB")
    print(f"raw sequential read      : {raw:9.1f} samples/s ({nbytes / 1e6 / raw_s:.0f} MB/s)")
    start = time.perf_counter()
    decoded = _decode_all(urls) / (time.perf_counter() - start)
    print(f"read + video decode      : {decoded:9.1f} samples/s ({decoded / raw:.3f}x raw)")
    config = ReaderConfig(height=height, width=width, latent_grid=(height // 16, width // 16), shuffle_buffer=16)
    for workers in args.workers:
        loader = torch.utils.data.DataLoader(make_dataset(urls, config), batch_size=1, num_workers=workers,
                                             collate_fn=collate)  # fmt: skip
        start = time.perf_counter()
        n = sum(len(batch["key"]) for batch in loader)
        rate = n / (time.perf_counter() - start)
        print(f"training reader, {workers} workers: {rate:9.1f} samples/s ({rate / raw:.3f}x raw, "
              f"{rate / decoded:.2f}x read+decode)")  # fmt: skip


if __name__ == "__main__":
    main()
