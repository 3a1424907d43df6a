"""Training reader: a WebDataset pipeline over a shard set, split by node and by worker.

Each sample becomes tensors at the training size: video (T, 3, H, W) uint8 (only the first
frame for samples with stored latents, `encoded.*`, which training uses instead), audio (N, S)
float32 at 16 kHz, boxes (N, T, 4) in training pixels, face crops (N, 3, F, F) uint8, and face
masks (N, h, w) on a given latent grid. Pixels stay uint8 until the training step moves them
to the device and scales them to [-1, 1] there: a float copy of an 81-frame 480x832 clip is
390 MB, and making it on the loader's CPU costs more than decoding the video. A mask is the union of an identity's boxes over the clip,
each box widened and heightened by a factor drawn from the configured ranges (AnyTalker: width
x1.3-1.5, height x1.2-1.4), so the model sees where a face may move without a hard edge.

Splitting: `split_by_node` reads RANK and WORLD_SIZE (Ray Train and torchrun set them) and
`split_by_worker` the DataLoader worker, so 2 nodes x 2 workers read disjoint shards. With
fewer shards than readers, the extra readers get none (`empty_check=False`), never duplicates.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from dataclasses import dataclass, replace

import fsspec
import numpy as np
import torch
import webdataset as wds

from shards.schema import Sample, SchemaError, from_members


@dataclass(frozen=True)
class ReaderConfig:
    height: int = 480
    width: int = 832
    latent_grid: tuple[int, int] = (30, 52)  # (h, w): VAE stride 8, patch 2 at 480x832
    face_size: int = 224
    mask_width_range: tuple[float, float] = (1.3, 1.5)
    mask_height_range: tuple[float, float] = (1.2, 1.4)
    shuffle_buffer: int = 64
    shardshuffle: int | bool = 100
    stage: int | None = None  # keep only this stage's samples
    skip_encoded_video: bool = True  # samples with stored latents: decode only the first frame
    seed: int = 0
    frames: int | None = None  # a window of this many frames from each sample (None: all of it)
    random_window: bool = False  # where the window starts: drawn per sample (training), else frame 0


def face_masks(
    boxes: np.ndarray, size: tuple[int, int], grid: tuple[int, int], scale_w: np.ndarray, scale_h: np.ndarray
) -> np.ndarray:
    """(N, T, 4) boxes in pixels of an image of `size` (H, W) to (N, h, w) masks on `grid`:
    a grid cell is in identity i's mask when its centre lies in any of i's expanded boxes."""
    n = boxes.shape[0]
    gh, gw = grid
    ys = (np.arange(gh) + 0.5) * size[0] / gh
    xs = (np.arange(gw) + 0.5) * size[1] / gw
    masks = np.zeros((n, gh, gw), np.float32)
    for i in range(n):
        b = boxes[i][~np.isnan(boxes[i, :, 0])]
        if not len(b):
            continue
        cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        hw, hh = (b[:, 2] - b[:, 0]) * scale_w[i] / 2, (b[:, 3] - b[:, 1]) * scale_h[i] / 2
        inside_x = np.abs(xs[None, :] - cx[:, None]) <= hw[:, None]  # (K, gw)
        inside_y = np.abs(ys[None, :] - cy[:, None]) <= hh[:, None]  # (K, gh)
        masks[i] = (inside_y[:, :, None] & inside_x[:, None, :]).any(axis=0)
    return masks


def window(sample: Sample, start: int, end: int) -> Sample:
    """Frames [start, end) of a sample with their boxes and audio (the video may hold only the
    first `end` frames already: the decoder stops there)."""
    a0 = round(start / sample.fps * sample.audio_rate)
    a1 = a0 + round((end - start) / sample.fps * sample.audio_rate)
    return replace(sample, video=sample.video[start:end], boxes=sample.boxes[:, start:end],
                   audio=[track[a0:a1] for track in sample.audio])  # fmt: skip


def _resize_face(face: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA)


class DecodeSample:
    """Tar members of one sample to training tensors (a class, so DataLoader workers can pickle it)."""

    def __init__(self, config: ReaderConfig) -> None:
        self.config = config
        self._rng: np.random.Generator | None = None

    def _generator(self) -> np.random.Generator:
        """One generator per reader process (seed, rank, worker): masks differ between epochs and
        readers, and a rerun with the same seed draws the same sequence."""
        if self._rng is None:
            info = torch.utils.data.get_worker_info()
            rank = int(os.environ.get("RANK", 0))
            self._rng = np.random.default_rng([self.config.seed, rank, info.id if info else 0])
        return self._rng

    def _window_start(self, key: str, meta: dict, encoded: bool) -> int:
        """The first frame of the training window. Stored latents fix their own length, so an
        encoded sample must already be the window's length."""
        c, total = self.config, int(meta["n_frames"])
        if c.frames is None:
            return 0
        if encoded:
            if total != c.frames:
                raise SchemaError(f"{key}: encoded at {total} frames, the reader wants {c.frames}: "
                                  f"encode the set again with data.frames: {c.frames}")  # fmt: skip
            return 0
        if total < c.frames:
            raise SchemaError(f"{key}: {total} frames, fewer than the {c.frames} the reader wants")
        return int(self._generator().integers(0, total - c.frames + 1)) if c.random_window else 0

    def __call__(self, raw: dict) -> dict:
        c = self.config
        members = {k: v for k, v in raw.items() if not k.startswith("__")}
        encoded = c.skip_encoded_video and "latents.npy" in members
        start = self._window_start(raw["__key__"], json.loads(members["meta.json"]), encoded)
        end = start + c.frames if c.frames and not encoded else None
        sample = from_members(raw["__key__"], members, size=(c.height, c.width), frames=1 if encoded else end)
        if end is not None:
            sample = window(sample, start, end)
        rng = self._generator()
        n = sample.n_identities
        masks = face_masks(
            sample.boxes, (c.height, c.width), c.latent_grid,
            rng.uniform(*c.mask_width_range, n), rng.uniform(*c.mask_height_range, n),
        )  # fmt: skip
        video = torch.from_numpy(sample.video).permute(0, 3, 1, 2)  # uint8: 4x less to move than float
        faces = np.stack([_resize_face(f, c.face_size) for f in sample.faces])
        length = max(len(a) for a in sample.audio)
        audio = np.zeros((n, length), np.float32)
        for i, a in enumerate(sample.audio):
            audio[i, : len(a)] = a
        return {
            "key": sample.key,
            "video": video,
            "audio": torch.from_numpy(audio),
            "boxes": torch.from_numpy(sample.boxes),
            "faces": torch.from_numpy(faces).permute(0, 3, 1, 2),
            "masks": torch.from_numpy(masks),
            "meta": sample.meta,
            **{f"encoded.{name[:-4]}": torch.from_numpy(a.astype(np.float32)) for name, a in sample.encoded.items()},
        }


class StageFilter:
    """Keep one training stage's samples (a class, so spawned DataLoader workers can pickle it)."""

    def __init__(self, stage: int) -> None:
        self.stage = stage

    def __call__(self, raw: dict) -> bool:
        return json.loads(raw["meta.json"]).get("stage") == self.stage


def make_dataset(
    urls: list[str], config: ReaderConfig = ReaderConfig(), resampled: bool = False, select=None,
    split_nodes: bool = True,
) -> wds.WebDataset:
    """The WebDataset pipeline: shards split by node and worker, shuffled, decoded to tensors.

    `resampled=True` draws shards with replacement forever (the usual choice for multi-node
    training; bound it with `.with_epoch`); False reads each shard once, for evaluation and tests.
    `select` keeps only the raw samples it returns True for (it sees the undecoded members).
    `split_nodes=False` gives every rank every shard (validation: the same numbers on each rank).
    """
    dataset = wds.WebDataset(
        urls,
        resampled=resampled,
        shardshuffle=False if resampled else config.shardshuffle,
        nodesplitter=None if resampled or not split_nodes else wds.split_by_node,
        workersplitter=None if resampled else wds.split_by_worker,
        empty_check=False,
        seed=config.seed,
        handler=wds.warn_and_continue,
    )
    if config.stage is not None:
        dataset = dataset.select(StageFilter(config.stage))
    if select is not None:
        dataset = dataset.select(select)
    if config.shuffle_buffer:
        dataset = dataset.shuffle(config.shuffle_buffer, seed=config.seed)
    return dataset.map(DecodeSample(config))


def collate(samples: list[dict]) -> dict:
    """Batch samples with different identity counts: pad to the largest N, with `identity_mask`."""
    n = max(s["audio"].shape[0] for s in samples)
    length = max(s["audio"].shape[1] for s in samples)

    def pad(x: torch.Tensor, size: tuple[int, ...], value: float = 0.0) -> torch.Tensor:
        out = torch.full(size, value, dtype=x.dtype)
        out[tuple(slice(0, d) for d in x.shape)] = x
        return out

    encoded = {}
    for name in {k for s in samples for k in s if k.startswith("encoded.")}:
        if all(name in s for s in samples):  # per-identity ones (first dim N) are padded like audio
            per_identity = name in ("encoded.audiofeats", "encoded.facetokens")
            encoded[name] = torch.stack([pad(s[name], (n, *s[name].shape[1:])) if per_identity else s[name] for s in samples])
    return {
        **encoded,
        "key": [s["key"] for s in samples],
        "video": torch.stack([s["video"] for s in samples]),
        "audio": torch.stack([pad(s["audio"], (n, length)) for s in samples]),
        "boxes": torch.stack([pad(s["boxes"], (n, *s["boxes"].shape[1:]), float("nan")) for s in samples]),
        "faces": torch.stack([pad(s["faces"], (n, *s["faces"].shape[1:])) for s in samples]),
        "masks": torch.stack([pad(s["masks"], (n, *s["masks"].shape[1:])) for s in samples]),
        "identity_mask": torch.tensor([[i < s["audio"].shape[0] for i in range(n)] for s in samples]),
        "meta": [s["meta"] for s in samples],
    }


def iter_raw_samples(urls: list[str]):
    """(key, members) of every sample, reading the tars in order (a sample's members are contiguous)."""
    for url in urls:
        with fsspec.open(url, "rb") as fh, tarfile.open(fileobj=fh, mode="r|") as tar:
            key, parts = None, {}
            for member in tar:
                name_key, _, name = member.name.partition(".")
                if name_key != key and parts:
                    yield key, parts
                    parts = {}
                key = name_key
                parts[name] = tar.extractfile(member).read()
            if parts:
                yield key, parts


def raw_bytes_read(urls: list[str]) -> tuple[int, int]:
    """Samples and bytes of a plain sequential read of the tars: the loader benchmark's baseline."""
    samples, total = 0, 0
    for url in urls:
        with fsspec.open(url, "rb") as fh, tarfile.open(fileobj=io.BufferedReader(fh), mode="r|") as tar:
            for member in tar:
                data = tar.extractfile(member)
                if data is not None:
                    total += len(data.read())
                    samples += member.name.endswith(".meta.json")
    return samples, total
