"""The sample contract, version 1: one place that both the writer and the reader use.

A sample is one training example with N identities (1 for a single-person clip, 2 to 4 for a
composite or a real multi-person clip). shards/README.md describes every member; `to_members`
and `from_members` are the only code that maps a `Sample` to tar members and back, and
`validate` is what both sides check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from shards import codec

SCHEMA_VERSION = 1
# Optional members: frozen-encoder outputs computed once at shard time (`anytalker shards encode`),
# at the training size named in meta.json's `encoded`. A reader that does not know them ignores them.
ENCODED = {
    "latents.npy": "VAE latents of the video, normalised (z, f, h, w) float32",
    "reference.npy": "latents of the first frame followed by zero frames (z, f, h, w) float32; the mask channels are added in the step",
    "audiofeats.npy": "wav2vec2 windows per identity (N, T, window, layers, C) float16",
    "facetokens.npy": "image-encoder tokens of each face crop (N, K, C) float16",
    "imagetokens.npy": "image-encoder tokens of the reference frame (K, C) float16",
}
KINDS = ("single", "composite", "multi")
Kind = Literal["single", "composite", "multi"]
_KEY = re.compile(r"^[A-Za-z0-9_-]+$")  # WebDataset splits keys at the first dot: none allowed


class SchemaError(ValueError):
    """A sample that breaks the contract; the message says which member and why."""


@dataclass
class Sample:
    key: str
    kind: Kind
    stage: int  # 1: composites and single-person clips; 2: real multi-person clips
    video: np.ndarray  # (T, H, W, 3) uint8 RGB
    fps: float
    audio: list[np.ndarray]  # N tracks, float32 mono at `audio_rate`, identity order left to right
    boxes: np.ndarray  # (N, T, 4) float32 x0, y0, x1, y1 in video pixels; NaN where the face is not seen
    faces: list[np.ndarray]  # N face crops (RGB) from the reference frame, for the face encoder
    meta: dict = field(default_factory=dict)  # sources, identities, speaking, transcript, scores, split
    audio_rate: int = 16000
    encoded: dict[str, np.ndarray] = field(default_factory=dict)  # optional frozen-encoder outputs (ENCODED)

    @property
    def n_identities(self) -> int:
        return len(self.audio)


def validate(sample: Sample) -> None:
    """Raise SchemaError when a sample breaks the contract (the writer calls it before writing)."""
    n, (t, h, w, _) = sample.n_identities, sample.video.shape
    if not _KEY.match(sample.key):
        raise SchemaError(f"key {sample.key!r}: letters, digits, - and _ only")
    if sample.kind not in KINDS or sample.stage not in (1, 2):
        raise SchemaError(f"{sample.key}: kind {sample.kind!r} / stage {sample.stage!r}")
    if not 1 <= n <= 8 or len(sample.faces) != n:
        raise SchemaError(f"{sample.key}: {n} audio tracks and {len(sample.faces)} face crops")
    if (sample.kind == "single") != (n == 1):
        raise SchemaError(f"{sample.key}: kind {sample.kind} with {n} identities")
    if h % 2 or w % 2 or sample.video.dtype != np.uint8:
        raise SchemaError(f"{sample.key}: video must be uint8 with even sides, got {sample.video.shape}")
    if sample.boxes.shape != (n, t, 4):
        raise SchemaError(f"{sample.key}: boxes {sample.boxes.shape}, expected {(n, t, 4)}")
    expected = int(round(t / sample.fps * sample.audio_rate))
    for i, track in enumerate(sample.audio):
        if track.ndim != 1 or abs(len(track) - expected) > sample.audio_rate // sample.fps:
            raise SchemaError(f"{sample.key}: audio.{i} has {track.shape} samples, expected {expected}")
    for i, ranges in enumerate(sample.meta.get("speaking", [[]] * n)):
        if any(not 0 <= a <= b <= t / sample.fps + 1e-6 for a, b in ranges):
            raise SchemaError(f"{sample.key}: speaking intervals of identity {i} outside the clip")


def to_members(sample: Sample, crf: int = 20) -> dict[str, bytes]:
    """The tar members of a sample (without `__key__`)."""
    validate(sample)
    t, h, w, _ = sample.video.shape
    meta = {
        **sample.meta,
        "schema": SCHEMA_VERSION,
        "kind": sample.kind,
        "stage": sample.stage,
        "n_identities": sample.n_identities,
        "fps": sample.fps,
        "n_frames": t,
        "width": w,
        "height": h,
        "audio_rate": sample.audio_rate,
    }
    members = {
        "video.mp4": codec.encode_video(sample.video, sample.fps, crf=crf),
        "boxes.npy": codec.encode_npy(sample.boxes.astype(np.float32)),
        "ref.jpg": codec.encode_jpg(sample.video[0]),
        "meta.json": codec.encode_json(meta),
    }
    for i, track in enumerate(sample.audio):
        members[f"audio.{i}.wav"] = codec.encode_wav(track, sample.audio_rate)
        members[f"face.{i}.jpg"] = codec.encode_jpg(sample.faces[i])
    for name, array in sample.encoded.items():
        if name not in ENCODED:
            raise SchemaError(f"{sample.key}: unknown encoded member {name}")
        members[name] = codec.encode_npy(array)
    return members


def member_names(n_identities: int) -> list[str]:
    """Every member a sample with this many identities has."""
    names = ["video.mp4", "boxes.npy", "ref.jpg", "meta.json"]
    for i in range(n_identities):
        names += [f"audio.{i}.wav", f"face.{i}.jpg"]
    return names


def from_members(
    key: str, members: dict[str, bytes], size: tuple[int, int] | None = None, frames: int | None = None
) -> Sample:
    """A sample from its tar members; `size` (H, W) rescales the video and its boxes; `frames`
    decodes only the first frames (training on encoded members needs the reference frame only)."""
    meta = codec.decode_json(members["meta.json"])
    if meta.get("schema") != SCHEMA_VERSION:
        raise SchemaError(f"{key}: schema {meta.get('schema')}, this reader reads {SCHEMA_VERSION}")
    n = int(meta["n_identities"])
    missing = [m for m in member_names(n) if m not in members]
    if missing:
        raise SchemaError(f"{key}: missing members {missing}")
    video, fps = codec.decode_video(members["video.mp4"], size, frames)
    boxes = codec.decode_npy(members["boxes.npy"]).astype(np.float32)
    if size:
        sx, sy = size[1] / meta["width"], size[0] / meta["height"]
        boxes = boxes * np.array([sx, sy, sx, sy], np.float32)
    audio = [codec.decode_wav(members[f"audio.{i}.wav"])[0] for i in range(n)]
    faces = [codec.decode_jpg(members[f"face.{i}.jpg"]) for i in range(n)]
    encoded = {name: codec.decode_npy(members[name]) for name in ENCODED if name in members}
    return Sample(key, meta["kind"], int(meta["stage"]), video, fps, audio, boxes, faces, meta, int(meta["audio_rate"]),
                  encoded)  # fmt: skip
