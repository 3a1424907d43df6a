"""Benchmark folders: AnyTalker's interactivity layout and its N-identity generalisation.

AnyTalker's layout (../shared/anytalker/README.md, "Their interactivity metric"):

    DIR/speaker_duration.json   {"interact_1.mp4": {"left": [[s, e], ...], "right": [...]}, ...}
    DIR/audio_left/interact_1_left.wav, DIR/audio_right/interact_1_right.wav
    DIR/images/interact_1.jpg   the reference frame (or DIR/interact_1.mp4, whose first frame is used)

N identities: the entry's keys are `0`, `1`, ... (left to right) and the tracks are
`audio_<key>/<stem>_<key>.wav`. `left`/`right` are identities 0 and 1. An identity's intervals
may be `null`: they are then derived from its own track (`voice_intervals`, a VAD); `[]` means
it never speaks. An item without a
reference frame can still be scored (its real video), not generated from.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DURATIONS = "speaker_duration.json"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class BenchmarkError(ValueError):
    """A benchmark folder that does not follow the layout; the message says what is missing."""


@dataclass(frozen=True)
class BenchmarkItem:
    name: str  # the video's stem, e.g. interact_11
    sides: tuple[str, ...]  # identity keys left to right: ("left", "right") or ("0", "1", "2")
    tracks: tuple[Path, ...]  # per identity, its own audio
    speaking: tuple[tuple[tuple[float, float], ...] | None, ...]  # per identity, seconds; None: from its track (VAD)
    image: Path | None  # the reference frame to generate from
    video: Path | None  # the real recording, when the benchmark holds it

    @property
    def n(self) -> int:
        return len(self.sides)


def _order(keys: list[str]) -> list[str]:
    if set(keys) == {"left", "right"}:
        return ["left", "right"]
    if all(k.isdigit() for k in keys):
        return sorted(keys, key=int)
    raise BenchmarkError(f"identity keys are left/right or 0, 1, ...; got {keys}")


@dataclass(frozen=True)
class Benchmark:
    root: Path
    items: list[BenchmarkItem]
    skipped: list[str]  # listed videos whose audio tracks are not there, and why


def read_benchmark(root: str | Path) -> Benchmark:
    """The items whose tracks are present; a listed video without them is skipped with the reason
    (AnyTalker's own download list lacks one of its 29 entries)."""
    root = Path(root)
    path = root / DURATIONS
    if not path.is_file():
        raise BenchmarkError(f"{root}: no {DURATIONS} (the speaking intervals per video and identity)")
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BenchmarkError(f"{path}: not JSON ({exc})") from None
    items, skipped = [], []
    for video_name, sides in sorted(entries.items()):
        stem = Path(video_name).stem
        order = _order(list(sides))
        tracks = tuple(root / f"audio_{side}" / f"{stem}_{side}.wav" for side in order)
        missing = [str(t) for t in tracks if not t.is_file()]
        if missing:
            skipped.append(f"{video_name}: audio tracks missing ({', '.join(missing)})")
            continue
        speaking = tuple(
            None if sides[side] is None else tuple((float(a), float(b)) for a, b in sides[side]) for side in order
        )
        image = next(
            (p for s in IMAGE_SUFFIXES for p in (root / "images" / f"{stem}{s}", root / f"{stem}{s}") if p.is_file()),
            None,
        )
        video = root / f"{stem}.mp4"
        items.append(BenchmarkItem(stem, tuple(order), tracks, speaking, image, video if video.is_file() else None))
    if not items:
        raise BenchmarkError(
            f"{path}: no listed video has its audio tracks in audio_<side>/" + (f" ({skipped[0]})" if skipped else "")
        )
    return Benchmark(root, items, skipped)


def speaking_mask(intervals, n_frames: int, fps: float) -> np.ndarray:
    """(n_frames,) bool: frame t (its middle, (t + 0.5) / fps) lies in an interval."""
    times = (np.arange(n_frames) + 0.5) / fps
    mask = np.zeros(n_frames, bool)
    for a, b in intervals:
        mask |= (times >= a) & (times < b)
    return mask


def mask_intervals(on: np.ndarray, step_s: float) -> list[tuple[float, float]]:
    """The runs of True in a per-step mask, as (start, end) seconds (step i spans i..i+1 steps)."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], np.asarray(on, np.int8), [0]])))
    return [(b * step_s, e * step_s) for b, e in zip(edges[::2], edges[1::2], strict=True)]


def voice_intervals(audio: np.ndarray, rate: int = 16000, frame_s: float = 0.02, min_gap_s: float = 0.3,
                    min_len_s: float = 0.2) -> list[tuple[float, float]]:  # fmt: skip
    """Speaking intervals of one identity's own track (a VAD on its energy): an identity's track
    is silent (exactly or nearly) where it listens, so a relative energy threshold separates them."""
    hop = int(rate * frame_s)
    n = len(audio) // hop
    if n == 0:
        return []
    energy = np.sqrt((audio[: n * hop].reshape(n, hop).astype(np.float64) ** 2).mean(1))
    peak = np.percentile(energy, 95)
    if peak < 3e-3:  # below -50 dBFS at its loudest: a silent track (room tone, codec noise), no speech
        return []
    on = energy > max(0.05 * peak, 1e-3)
    runs = [list(run) for run in mask_intervals(on, frame_s)]
    merged: list[list[float]] = []
    for run in runs:
        if merged and run[0] - merged[-1][1] < min_gap_s:
            merged[-1][1] = run[1]
        else:
            merged.append(run)
    return [(round(a, 3), round(b, 3)) for a, b in merged if b - a >= min_len_s]


def write_benchmark(root: str | Path, name: str, tracks: list[np.ndarray], speaking: list[list[tuple[float, float]]],
                    image: np.ndarray, video: Path | None = None, rate: int = 16000) -> BenchmarkItem:  # fmt: skip
    """Add one item in the layout above (two identities as left/right, more as 0..N-1); every
    file is written beside its final name and renamed, and speaker_duration.json last."""
    import cv2

    from shards.codec import encode_wav

    root = Path(root)
    sides = ["left", "right"] if len(tracks) == 2 else [str(i) for i in range(len(tracks))]
    for side, track in zip(sides, tracks, strict=True):
        _atomic(root / f"audio_{side}" / f"{name}_{side}.wav", encode_wav(track, rate))
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    _atomic(root / "images" / f"{name}.jpg", jpg.tobytes())
    if video is not None:
        _atomic(root / f"{name}.mp4", Path(video).read_bytes())
    path = root / DURATIONS
    entries = json.loads(path.read_text()) if path.is_file() else {}
    entries[f"{name}.mp4"] = {
        side: [[round(a, 2), round(b, 2)] for a, b in ranges] for side, ranges in zip(sides, speaking, strict=True)
    }
    _atomic(path, json.dumps(entries, indent=4, sort_keys=True).encode())
    return next(i for i in read_benchmark(root).items if i.name == name)


def _atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.part")
    temp.write_bytes(data)
    os.replace(temp, path)


def generation_batch(items: list[BenchmarkItem], out: Path, frames_dir: Path | None = None, caption: str = "") -> Path:
    """AnyTalker's batch JSON for the items (the generate flow's input). An item without a
    reference image is generated from its real video's first frame, saved under `frames_dir`."""
    import cv2

    from tasks.curation.clipmedia import first_frame

    entries = {}
    for item in items:
        image = item.image
        if image is None and item.video is not None and frames_dir is not None:
            image = frames_dir / f"{item.name}.png"
            if not image.is_file():
                ok, png = cv2.imencode(
                    ".png", cv2.cvtColor(first_frame(item.video), cv2.COLOR_RGB2BGR)
                )
                _atomic(image, png.tobytes())
        if image is not None:
            entries[item.name] = {
                "image_path": str(image),
                "caption": caption,
                "audio_list": [str(t) for t in item.tracks],
            }
    if not entries:
        raise BenchmarkError("no benchmark item has a reference frame (images/<name>.jpg) or a video to take one from")
    _atomic(out, json.dumps(entries, indent=2).encode())
    return out
