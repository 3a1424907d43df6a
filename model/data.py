"""The DataModule: the shard reader at the training size, stage 1 mixing composites and
single-person clips at `composite_share`, stage 2 real multi-person clips only."""

from __future__ import annotations

import json

import lightning as L
import webdataset as wds

from model.config import DataConfig
from shards.reader import ReaderConfig, collate, make_dataset
from shards.writer import read_index, shard_urls


def check_shard_set(shards: str, fps: float, frames: int) -> None:
    """Refuse a shard set the model cannot train on, before anything starts: samples rendered at
    another frame rate than `model.fps` (motion at the wrong speed, audio windows off by the
    ratio), or shorter than the training window `data.frames` (longer ones give a window of it).
    What the index does not record passes; the reader checks each sample's length too."""
    compose = read_index(shards).get("compose", {})
    made_fps, made_frames = compose.get("fps"), compose.get("frames")
    if made_fps is not None and abs(float(made_fps) - fps) > 1e-6:
        raise ValueError(f"{shards}: samples are {made_fps:g} fps but model.fps is {fps:g}; rebuild the shards with "
                         f"compose.fps: {fps:g} or set model.fps: {made_fps:g}")  # fmt: skip
    if made_frames is not None and int(made_frames) < frames:
        raise ValueError(f"{shards}: samples are {made_frames} frames but data.frames is {frames}; rebuild the shards "
                         f"with compose.frames: {frames} or set data.frames: {made_frames}")  # fmt: skip


class KindFilter:
    def __init__(self, kinds: tuple[str, ...]) -> None:
        self.kinds = kinds

    def __call__(self, raw: dict) -> bool:
        return json.loads(raw["meta.json"])["kind"] in self.kinds


class ShardDataModule(L.LightningDataModule):
    def __init__(self, shards: str, config: DataConfig, batches_per_epoch: int, patch: tuple[int, int] = (2, 2)) -> None:
        super().__init__()
        self.shards, self.config, self.batches_per_epoch = shards, config, batches_per_epoch
        self.reader = ReaderConfig(
            height=config.height, width=config.width, latent_grid=(config.height // 8 // patch[0], config.width // 8 // patch[1]),
            shuffle_buffer=config.shuffle_buffer, stage=config.stage, seed=config.seed, frames=config.frames,
            random_window=True,
        )  # fmt: skip

    def _dataset(self, kinds: tuple[str, ...] | None):
        urls = shard_urls(self.shards, "train")
        if not urls:
            raise ValueError(f"no train shards in {self.shards}")
        # each rank and each resumption draws its own shard sequence (resampling has no position to restore)
        seed = self.config.seed + 1000 * self.trainer.global_rank + self.trainer.global_step if self.trainer else 0
        reader = ReaderConfig(**{**self.reader.__dict__, "seed": seed})
        return make_dataset(urls, reader, resampled=True, select=KindFilter(kinds) if kinds else None)

    def has_val(self) -> bool:
        return bool(shard_urls(self.shards, "val"))

    def val_dataloader(self) -> wds.WebLoader:
        """The whole val split, in order, on every rank (no node split, no shuffle): each rank
        computes the same fixed-seed loss, so no rank waits on another with fewer batches."""
        reader = ReaderConfig(**{**self.reader.__dict__, "shuffle_buffer": 0, "shardshuffle": False, "seed": 0,
                                 "random_window": False})  # fmt: skip
        dataset = make_dataset(shard_urls(self.shards, "val"), reader, split_nodes=False)
        return wds.WebLoader(dataset, batch_size=self.config.batch_size, num_workers=0, collate_fn=collate)

    def train_dataloader(self) -> wds.WebLoader:
        c = self.config
        if c.stage == 1 and 0 < c.composite_share < 1:
            dataset = wds.RandomMix([self._dataset(("composite",)), self._dataset(("single",))],
                                    [c.composite_share, 1 - c.composite_share])  # fmt: skip
        else:
            dataset = self._dataset(None)
        loader = wds.WebLoader(dataset, batch_size=c.batch_size, num_workers=c.num_workers, collate_fn=collate)
        return loader.with_epoch(self.batches_per_epoch)  # resampled shards never end: an epoch is N batches
