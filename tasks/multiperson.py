"""Stage 2: real multi-person clips, each voice tied to a face, one audio track per person.

Candidates are analysed clips rejected at curation for several faces (or voices) that still
have speech. Each stable face gets its per-frame boxes and mouth opening (MediaPipe jawOpen on
its crop); the clip's speaker turns (the speech stage's diarization) give each frame a voice.
A voice is tied to the face whose mouth motion follows that voice's loudness: Pearson
correlation between the face's mouth-motion energy and the voice's speech-band envelope
(zero outside the voice's turns), both smoothed over 5 frames so a small audio offset does
not matter. A voice is tied only when its best face reaches `min_tie_correlation` and beats
the runner-up by `min_tie_margin`; two voices on one face, or a voice with no clear face,
reject the clip as `speakers_untied`. Each face's audio track is the clip's audio during its
voice's turns and silence elsewhere; a face with no voice is a listener (a silent track).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shards.schema import Sample
from tasks.clip_library import LibraryClip
from tasks.clipmedia import read_audio, read_clip
from tasks.compose import Crop, clip_scores, face_crop, read_cells, span
from tasks.config import CurateConfig
from tasks.faces import resolve_face_models, stable_faces
from tasks.landmarks import analyze_landmarks, resolve_landmarker
from tasks.records import Reason
from tasks.retime import retime
from tasks.sync import speech_band_envelope


@dataclass
class MultiPersonResult:
    clip_id: str
    rejected: Reason | None
    detail: str
    boxes: np.ndarray  # (F, T, 4) clip pixels, faces left to right
    voice_of_face: list[int | None] = field(default_factory=list)  # speaker label tied to each face
    frame_voice: np.ndarray | None = None  # (T,) speaker label per frame, -1 where nobody speaks
    correlations: list[list[float]] = field(default_factory=list)  # voices x faces
    metrics: dict = field(default_factory=dict)


def is_candidate(clip: LibraryClip, config: CurateConfig) -> bool:
    """Rejected at curation for several faces or voices, yet with enough speech."""
    return clip.reason in (Reason.MULTI_FACE.value, Reason.MULTI_SPEAKER.value) and (
        clip.metrics.get("speech_ratio", 0.0) >= config.multiperson.min_speech_ratio
    )


def frame_voices(turns: list[list], regions: list[list[float]], fps: float, n: int) -> np.ndarray:
    """(n,) speaker label per frame from possibly overlapping turn windows: the window whose
    centre is nearest the frame wins; frames outside voice activity get -1."""
    labels = np.full(n, -1, np.int64)
    nearest = np.full(n, np.inf)
    times = (np.arange(n) + 0.5) / fps
    for start, end, speaker in turns:
        inside = (times >= start) & (times < end)
        distance = np.abs(times - (start + end) / 2)
        better = inside & (distance < nearest)
        labels[better], nearest[better] = int(speaker), distance[better]
    voiced = np.zeros(n, bool)
    for a, b in regions:
        voiced |= (times >= a) & (times < b)
    labels[~voiced] = -1
    return labels


def _smooth(x: np.ndarray, width: int = 5) -> np.ndarray:
    return np.convolve(x, np.ones(width) / width, mode="same")


def _mouth_motion(jaw: np.ndarray) -> np.ndarray:
    ok = ~np.isnan(jaw)
    if ok.sum() < 2:
        return np.zeros_like(jaw, dtype=np.float64)
    filled = np.interp(np.arange(len(jaw)), np.flatnonzero(ok), jaw[ok])
    return _smooth(np.abs(np.diff(filled, prepend=filled[0])))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    if a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def tie_voices(correlations: np.ndarray, min_corr: float, min_margin: float) -> tuple[list[int | None], str]:
    """voices x faces correlations -> the voice tied to each face, or a reason why not."""
    n_voices, n_faces = correlations.shape
    tied: list[int | None] = [None] * n_faces
    for v in range(n_voices):
        order = np.argsort(correlations[v])[::-1]
        best = int(order[0])
        runner_up = correlations[v, order[1]] if n_faces > 1 else -1.0
        if correlations[v, best] < min_corr or correlations[v, best] - runner_up < min_margin:
            return tied, (f"voice {v}: best face {best} correlates {correlations[v, best]:.2f}, runner-up "
                          f"{runner_up:.2f} (needs >= {min_corr} and a margin of {min_margin})")  # fmt: skip
        if tied[best] is not None:
            return tied, f"voices {tied[best]} and {v} both follow face {best}"
        tied[best] = v
    return tied, ""


def analyze_multiperson(clip: LibraryClip, config: CurateConfig) -> MultiPersonResult:
    mp = config.multiperson
    media = read_clip(clip.path, config.faces.analysis_max_side)
    n = len(media.frames)
    faces = stable_faces(media, resolve_face_models(config.faces.model), config.faces.sample_fps,
                         mp.min_face_coverage, mp.min_face_ratio)  # fmt: skip
    boxes = np.stack([f.boxes for f in faces]) if faces else np.zeros((0, n, 4), np.float32)
    metrics: dict = {"stable_faces": len(faces)}
    if len(faces) < mp.min_faces:
        return MultiPersonResult(clip.clip_id, Reason.UNSTABLE_FACES,
                                 f"{len(faces)} face(s) stay in the picture, {mp.min_faces} needed", boxes, metrics=metrics)  # fmt: skip
    if len(faces) > mp.max_faces:
        return MultiPersonResult(clip.clip_id, Reason.TOO_MANY_FACES,
                                 f"{len(faces)} stable faces, at most {mp.max_faces}", boxes, metrics=metrics)  # fmt: skip
    landmarker = resolve_landmarker(config.faces.landmarker)
    motions = [_mouth_motion(analyze_landmarks(media, f.boxes, landmarker).jaw_open) for f in faces]
    labels = frame_voices(clip.turns, clip.speech_regions, media.fps, n)
    envelope = _smooth(speech_band_envelope(media.audio, media.rate, media.fps, n))
    voices = [v for v in sorted(set(labels.tolist()) - {-1}) if (labels == v).sum() >= 0.1 * (labels >= 0).sum()]
    metrics["voices"] = len(voices)
    if not voices:
        return MultiPersonResult(clip.clip_id, Reason.NO_SPEECH, "no voice holds a tenth of the speech", boxes,
                                 frame_voice=labels, metrics=metrics)  # fmt: skip
    correlations = np.array([[_corr(m, envelope * (labels == v)) for m in motions] for v in voices])
    tied_index, why = tie_voices(correlations, mp.min_tie_correlation, mp.min_tie_margin)
    tied = [voices[i] if i is not None else None for i in tied_index]
    metrics["tie_correlations"] = np.round(correlations, 3).tolist()
    result = MultiPersonResult(clip.clip_id, None, "", boxes, tied, labels, metrics["tie_correlations"], metrics)
    if why:
        result.rejected, result.detail = Reason.SPEAKERS_UNTIED, why
    return result


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
        "tie_correlations": result.correlations,
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


def save_result(path: str, result: MultiPersonResult) -> None:
    """The arrays a stage-2 sample needs, written atomically beside the clip's analysis."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".{target.name}.{os.getpid()}.part")
    labels = result.frame_voice if result.frame_voice is not None else np.zeros(0, np.int64)
    voices = np.array([-1 if v is None else v for v in result.voice_of_face], np.int64)
    with open(temp, "wb") as fh:
        np.savez_compressed(fh, boxes=result.boxes, frame_voice=labels, voice_of_face=voices)
    os.replace(temp, target)


def load_result(path: str, clip_id: str, metrics: dict) -> MultiPersonResult:
    arrays = np.load(path)
    tied = [None if v < 0 else int(v) for v in arrays["voice_of_face"]]
    return MultiPersonResult(clip_id, None, "", arrays["boxes"], tied, arrays["frame_voice"],
                             metrics.get("tie_correlations", []), metrics)  # fmt: skip
