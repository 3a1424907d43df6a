"""Decode a standard clip once, for every analysis: frames at an analysis size, and its audio.

Frames are kept in memory scaled so the long side is at most `max_side` (a 15 s clip at 640 px
is about 260 MB); `scale` maps analysis pixels back to the clip's own pixels, so sizes in the
catalog are in clip pixels.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np


@dataclass
class ClipMedia:
    frames: np.ndarray  # (T, H, W, 3) uint8 RGB at analysis size
    fps: float
    width: int  # clip pixels
    height: int
    scale: float  # clip pixels per analysis pixel
    audio: np.ndarray  # float32 mono at `rate`
    rate: int

    @property
    def duration_s(self) -> float:
        return len(self.frames) / self.fps


def read_audio(path: str | Path, rate: int = 16000) -> np.ndarray:
    """The clip's first audio stream as float32 mono (empty when it has none)."""
    proc = subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-i", str(path), "-vn", "-f", "f32le", "-ac", "1", "-ar", str(rate), "-"],
        capture_output=True,
    )
    if proc.returncode != 0:  # no audio stream: nothing to map
        return np.zeros(0, np.float32)
    return np.frombuffer(proc.stdout, np.float32).copy()


def read_clip(path: str | Path, max_side: int = 640, rate: int = 16000) -> ClipMedia:
    """Decode all frames (threaded, scaled in the decoder's own scaler) and the audio."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        width, height = stream.codec_context.width, stream.codec_context.height
        scale = max(1.0, max(width, height) / max_side)
        w, h = int(round(width / scale)) // 2 * 2, int(round(height / scale)) // 2 * 2
        frames = [f.to_ndarray(format="rgb24", width=w, height=h) for f in container.decode(stream)]
        fps = float(stream.average_rate or 25)
    return ClipMedia(np.stack(frames), fps, width, height, width / w, read_audio(path, rate), rate)


def first_frame(path: str | Path) -> np.ndarray:
    """Frame 0 as (H, W, 3) uint8 RGB at the video's own size, decoding nothing after it (the
    reference frame of a benchmark recording; `read_clip` would decode every frame and the audio)."""
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.video[0]):
            return frame.to_ndarray(format="rgb24")
    raise ValueError(f"{path}: no video frame")
