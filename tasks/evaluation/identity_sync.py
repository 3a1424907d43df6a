"""Lip sync per identity: each face track against its OWN audio track.

A composite or a generated N-person video has one audio track per person; scoring every face
against the mix would reward a listener whose lips move with someone else's voice. Two backends,
reported under different names so one is never read as the other:

- with the official `syncnet_v2.model` (tasks/curation/analysis/syncnet.py): `sync_c` and `sync_d` exactly as
  syncnet_python computes them (224-px crops, MFCC, offsets +-15, confidence = median - minimum
  of the mean distances, distance = the minimum), on frames taken to 25 fps, and `sync_abs_offset`;
- without it: the project's weight-free estimate (tasks/curation/analysis/sync.py), `sync_estimate_confidence`,
  `sync_estimate_abs_offset` and `sync_estimate_in_step` (1 - the smallest distance at offsets
  within +-2 frames). Its confidence is weak evidence on clips of a few seconds: against another
  person's track it is as often higher as lower; the offset is what tells (see the README).

Sync-C is taken at the best offset, so audio shifted by 10 frames keeps its confidence; the
absolute offset (frames, lower is better) is what says the picture is out of step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tasks.curation.analysis.landmarks import analyze_landmarks
from tasks.curation.analysis.sync import estimate_offset, syncnet_offset
from tasks.curation.clipmedia import ClipMedia

IN_STEP = 2  # frames: a generated video's picture and sound share one timeline, so sync is read near offset 0


def _media(frames: np.ndarray, fps: float, audio: np.ndarray, rate: int) -> ClipMedia:
    h, w = frames.shape[1:3]
    return ClipMedia(frames, fps, w, h, 1.0, audio.astype(np.float32), rate)


def speaking_span(speaking: list, n_frames: int, fps: float, pad: int) -> tuple[int, int]:
    """Frames from the first interval's start to the last one's end, `pad` frames wider."""
    if not speaking:
        return 0, n_frames
    start, end = min(a for a, _ in speaking), max(b for _, b in speaking)
    return max(0, int(start * fps) - pad), min(n_frames, int(np.ceil(end * fps)) + pad)


def identity_sync(frames: np.ndarray, fps: float, boxes: np.ndarray, audio: np.ndarray, landmarker: Path,
                  syncnet=None, rate: int = 16000, search: int = 15, speaking: list | None = None) -> dict[str, float]:  # fmt: skip
    """Figures for one identity: `boxes` (T, 4) its face in video pixels, `audio` its own track.
    With its `speaking` intervals, only the span in which it speaks is scored (a listener's
    silent track says nothing of sync and dilutes the correlation), widened by the search range."""
    if speaking:
        a, b = speaking_span(speaking, len(frames), fps, search)
        hop = rate / fps
        frames, boxes, audio = frames[a:b], boxes[a:b], audio[int(a * hop) : int(b * hop)]
    if syncnet is not None:
        from tasks.curation.analysis.asd import at_25fps

        frames25, boxes25 = at_25fps(frames, boxes, fps)
        result = syncnet_offset(syncnet, _media(np.stack(frames25), 25.0, audio, rate), boxes25, search)
        if not result.distances:
            return {}
        return {"sync_c": round(result.confidence, 4), "sync_d": round(float(np.nanmin(result.distances)), 4),
                "sync_abs_offset": abs(result.offset_frames)}  # fmt: skip
    media = _media(frames, fps, audio, rate)
    landmarks = analyze_landmarks(media, boxes, landmarker)
    if landmarks.found_ratio < 0.5:
        return {}
    result = estimate_offset(media, landmarks, search)
    if not result.distances:
        return {}
    in_step = 1.0 - float(np.nanmin(result.distances[search - IN_STEP : search + IN_STEP + 1]))
    return {
        "sync_estimate_confidence": round(result.confidence, 4),
        "sync_estimate_abs_offset": abs(result.offset_frames),
        "sync_estimate_in_step": round(in_step, 4),
    }
