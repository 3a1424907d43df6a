"""Samples at the training frame rate: clips are curated at `standardize.fps` (25 by default,
the rate SyncNet and Light-ASD expect), the model trains at `compose.fps` (AnyTalker: 24).

A sample is planned and rendered in source frames over the span that `frames` output frames
cover, then `retime` picks for each output frame the source frame nearest its time. Audio is
time-based and only cut to the output length, so sound and picture stay aligned to within half
a source frame (20 ms at 25 fps), and speaking intervals and words (in seconds) keep their
meaning. With equal rates `retime` changes nothing.
"""

from __future__ import annotations

import numpy as np

from shards.schema import Sample


def source_index(frames: int, source_fps: float, fps: float) -> np.ndarray:
    """For output frames 0..frames-1 (time i / fps), the nearest source frame (time k / source_fps)."""
    return np.rint(np.arange(frames) * (source_fps / fps) + 1e-9).astype(np.int64)


def source_frames(frames: int, source_fps: float, fps: float) -> int:
    """How many source frames a sample of `frames` output frames spans."""
    return int(source_index(frames, source_fps, fps)[-1]) + 1


def _to_frame(source_frame: int, source_fps: float, fps: float) -> int:
    return int(round(source_frame * fps / source_fps))


def retime(sample: Sample, fps: float, frames: int) -> Sample:
    """The sample at `fps` with `frames` frames; its video must span `source_frames(frames, ...)`."""
    if sample.fps == fps and len(sample.video) == frames:
        return sample
    index = source_index(frames, sample.fps, fps)
    if index[-1] >= len(sample.video):
        raise ValueError(f"{sample.key}: {len(sample.video)} source frames cannot make {frames} frames at {fps:g} fps")
    duration = frames / fps
    length = int(round(duration * sample.audio_rate))
    audio = []
    for track in sample.audio:
        cut = np.zeros(length, np.float32)
        cut[: min(length, len(track))] = track[:length]
        audio.append(cut)
    meta = dict(sample.meta, source_fps=sample.fps)
    if "speaking" in meta:
        meta["speaking"] = [
            [[a, round(min(b, duration), 4)] for a, b in ranges if a < duration] for ranges in meta["speaking"]
        ]
    if "words" in meta:
        meta["words"] = [[w for w in words if w["end"] <= duration + 1e-6] for words in meta["words"]]
        meta["transcript"] = [" ".join(w["word"] for w in words) for words in meta["words"]]
    if "turns" in meta:  # source frames to output frames
        turns = [
            [_to_frame(a, sample.fps, fps), min(frames, _to_frame(b, sample.fps, fps)), who]
            for a, b, who in meta["turns"]
        ]
        meta["turns"] = [t for t in turns if t[0] < t[1]]
    return Sample(sample.key, sample.kind, sample.stage, np.ascontiguousarray(sample.video[index]), fps, audio,
                  np.ascontiguousarray(sample.boxes[:, index]), sample.faces, meta, sample.audio_rate, sample.encoded)  # fmt: skip
