"""Stage 2, rendering: a tied clip's training samples, one audio track per face (its voice's
turns, silence elsewhere; a listener's track is silent), retimed to the model's frame rate."""

from __future__ import annotations

import numpy as np

from shards.schema import Sample
from tasks.config import CurateConfig
from tasks.curation.clipmedia import read_audio
from tasks.dataset.clip_library import LibraryClip
from tasks.dataset.compose import Crop, clip_scores, face_crop, read_cells, span
from tasks.dataset.retime import retime
from tasks.dataset.stage2.ties import MultiPersonResult


def voice_tracks(audio: np.ndarray, labels: np.ndarray, tied: list[int | None], fps: float, rate: int = 16000) -> list[np.ndarray]:
    """One track per face: the clip's audio in the frames of its voice, silence elsewhere."""
    hop = rate / fps
    tracks = []
    for voice in tied:
        gate = np.zeros(len(audio), np.float32)
        if voice is not None:
            for t in np.flatnonzero(labels == voice):
                gate[int(round(t * hop)) : int(round((t + 1) * hop))] = 1.0
        tracks.append(audio * gate)
    return tracks


def plan_windows(n_frames: int, frames: int) -> list[int]:
    """Start frames of non-overlapping sample windows, spread over the clip."""
    k = n_frames // frames
    if k == 0:
        return []
    gap = (n_frames - k * frames) // (k + 1)
    return [gap + w * (frames + gap) for w in range(k)]


def render_multi(result: MultiPersonResult, clip: LibraryClip, start: int, config: CurateConfig, key: str):
    """A stage-2 sample: the whole picture scaled to the cell height, one audio track per face,
    rendered over the source span of one sample from `start` and retimed to `compose.fps`."""
    frames = span(clip, config.compose)
    height = config.compose.cell_height
    width = int(round(clip.width * height / clip.height / 2)) * 2
    src = np.arange(start, start + frames)
    cells = read_cells(clip.path, src, Crop(0.0, 0.0, float(clip.width), float(clip.height)), (width, height))
    video = np.stack([cells[int(i)] for i in src])
    s = width / clip.width
    boxes = result.boxes[:, src] * np.array([s, height / clip.height, s, height / clip.height], np.float32)
    hop = 16000 / clip.fps
    a = int(round(start * hop))
    length = int(round(frames * hop))
    labels = result.frame_voice
    tracks = []
    for track in voice_tracks(read_audio(clip.path), labels, result.voice_of_face, clip.fps):
        piece = np.zeros(length, np.float32)
        part = track[a : a + length]
        piece[: len(part)] = part
        tracks.append(piece)
    speaking = []
    for voice in result.voice_of_face:
        on = (labels[src] == voice) if voice is not None else np.zeros(frames, bool)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(np.int8), [0]])))
        speaking.append([[round(float(b) / clip.fps, 4), round(float(e) / clip.fps, 4)] for b, e in zip(edges[::2], edges[1::2], strict=True)])
    n_faces = len(tracks)
    meta = {
        "identities": [f"{clip.identity}-face{i}" for i in range(n_faces)],
        "sources": [clip.source_entry(start_frame=start, face=i, voice=result.voice_of_face[i]) for i in range(n_faces)],
        "speaking": speaking,
        "tie": {"method": result.metrics.get("tie_method", "mouth_motion"), "scores": result.tie_scores},
        "transcript": [_words_of(clip, labels, voice, start, frames) for voice in result.voice_of_face],
        "scores": [clip_scores(clip)] * n_faces,
    }  # fmt: skip
    faces = [face_crop(video[0], boxes[i, 0]) for i in range(n_faces)]
    sample = Sample(key, "multi", 2, video, clip.fps, tracks, boxes.astype(np.float32), faces, meta)
    return retime(sample, config.compose.fps, config.compose.frames)


def _words_of(clip: LibraryClip, labels: np.ndarray, voice: int | None, start: int, frames: int) -> str:
    """The words inside the window whose middle falls in a frame of this voice."""
    if voice is None:
        return ""
    picked = []
    for w in clip.words:
        if "start" not in w:
            continue
        t = int((w["start"] + w.get("end", w["start"])) / 2 * clip.fps)
        if start <= t < start + frames and t < len(labels) and labels[t] == voice:
            picked.append(w["word"])
    return " ".join(picked)
