"""Stage 2, analysis: each voice of a real multi-person clip tied to the face that speaks it.

Candidates are analysed clips rejected at curation for several faces (or voices) that still
have speech. Each stable face gets its per-frame boxes; the clip's speaker turns (the speech
stage's diarization) give each frame a voice. A voice is tied to the face that speaks during
its turns:
- with Light-ASD (`speaker.model`): the face with the largest turn contrast (its mean speaking
  logit in the voice's frames minus that in the other voices' frames; the plain mean when one
  voice is heard), beating the runner-up by `min_tie_logit_margin`, and judged speaking in the
  voice's frames (mean logit above `min_tie_logit`, 0, the network's own boundary). A real
  listener scores low throughout; but Light-ASD is insensitive to sync, so faces that all move
  their mouths while someone speaks (the composite control) all score alike, and then it
  cannot decide;
- without it, or where it cannot decide: the face whose mouth motion (MediaPipe jawOpen)
  follows the voice's loudness (Pearson correlation of the mouth-motion energy and the voice's
  speech-band envelope, zero outside its turns, both smoothed over 5 frames), above
  `min_tie_correlation` and beating the runner-up by `min_tie_margin`; a face that Light-ASD
  judges silent in the voice's turns is left out (`tie_method: mouth_motion+light_asd`).
Two voices on one face, or a voice with no clear face, reject the clip as `speakers_untied`.
Each face's audio track is the clip's audio during its voice's turns and silence elsewhere; a
face with no voice is a listener (a silent track).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tasks.config import CurateConfig
from tasks.curation.analysis.asd import face_scores, light_asd
from tasks.curation.analysis.faces import resolve_face_models, stable_faces
from tasks.curation.analysis.landmarks import analyze_landmarks, resolve_landmarker
from tasks.curation.analysis.sync import speech_band_envelope
from tasks.curation.clipmedia import read_clip
from tasks.curation.verdict import STAGE2_REASONS
from tasks.dataset.clip_library import LibraryClip
from tasks.records import Reason


@dataclass
class MultiPersonResult:
    clip_id: str
    rejected: Reason | None
    detail: str
    boxes: np.ndarray  # (F, T, 4) clip pixels, faces left to right
    voice_of_face: list[int | None] = field(default_factory=list)  # speaker label tied to each face
    frame_voice: np.ndarray | None = None  # (T,) speaker label per frame, -1 where nobody speaks
    tie_scores: list[list[float]] = field(default_factory=list)  # voices x faces, by `metrics["tie_method"]`
    metrics: dict = field(default_factory=dict)


def is_candidate(clip: LibraryClip, config: CurateConfig) -> bool:
    """Rejected at curation for several faces or voices, yet with enough speech."""
    return clip.reason in {r.value for r in STAGE2_REASONS} and (
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


def asd_tie_scores(speaking: list[np.ndarray], labels: np.ndarray, voices: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """voices x faces: how much more a face is judged speaking in a voice's frames than in the
    other voices' frames (its turn contrast; the plain mean where no other voice is heard), and
    the plain mean logit in the voice's frames. The contrast is what separates two faces that
    both articulate (Light-ASD is insensitive to sync): the speaker scores higher in its own
    turns than in the others'; a listener scores the same in every turn."""
    during = np.array([[float(s[labels == v].mean()) for s in speaking] for v in voices])
    contrast = during.copy()
    for i, v in enumerate(voices):
        others = (labels >= 0) & (labels != v)
        if others.any():
            contrast[i] -= [float(s[others].mean()) for s in speaking]
    return contrast, during


def tie_voices(scores: np.ndarray, min_best: float, min_margin: float, what: str = "correlation") -> tuple[list[int | None], str]:
    """voices x faces scores (higher: this face speaks that voice) -> the voice tied to each
    face, or a reason why not."""
    n_voices, n_faces = scores.shape
    tied: list[int | None] = [None] * n_faces
    for v in range(n_voices):
        order = np.argsort(scores[v])[::-1]
        best = int(order[0])
        runner_up = scores[v, order[1]] if n_faces > 1 else -np.inf
        if scores[v, best] < min_best or scores[v, best] - runner_up < min_margin:
            needs = f">= {min_best} and a margin of {min_margin}" if np.isfinite(min_best) else f"a margin of {min_margin}"
            return tied, f"voice {v}: best face {best} has {what} {scores[v, best]:.2f}, runner-up {runner_up:.2f} (needs {needs})"
        if tied[best] is not None:
            return tied, f"voices {tied[best]} and {v} both follow face {best}"
        tied[best] = v
    return tied, ""


def analyze_multiperson(clip: LibraryClip, config: CurateConfig) -> MultiPersonResult:
    mp = config.multiperson
    media = read_clip(clip.path, config.faces.analysis_max_side)
    n = len(media.frames)
    faces = stable_faces(media, resolve_face_models(config.faces.model), config.faces.sample_fps,
                         mp.min_face_coverage, mp.min_face_ratio, config.faces.min_detect_px)  # fmt: skip
    boxes = np.stack([f.boxes for f in faces]) if faces else np.zeros((0, n, 4), np.float32)
    metrics: dict = {"stable_faces": len(faces)}
    if len(faces) < mp.min_faces:
        return MultiPersonResult(clip.clip_id, Reason.UNSTABLE_FACES,
                                 f"{len(faces)} face(s) stay in the picture, {mp.min_faces} needed", boxes, metrics=metrics)  # fmt: skip
    if len(faces) > mp.max_faces:
        return MultiPersonResult(clip.clip_id, Reason.TOO_MANY_FACES,
                                 f"{len(faces)} stable faces, at most {mp.max_faces}", boxes, metrics=metrics)  # fmt: skip
    labels = frame_voices(clip.turns, clip.speech_regions, media.fps, n)
    voices = [v for v in sorted(set(labels.tolist()) - {-1}) if (labels == v).sum() >= 0.1 * (labels >= 0).sum()]
    metrics["voices"] = len(voices)
    if not voices:
        return MultiPersonResult(clip.clip_id, Reason.NO_SPEECH, "no voice holds a tenth of the speech", boxes,
                                 frame_voice=labels, metrics=metrics)  # fmt: skip
    asd = light_asd(config.speaker.model)
    why = "no Light-ASD"
    if asd is not None:
        speaking = [face_scores(asd, media.frames, media.fps, f.boxes / media.scale, media.audio, media.rate) for f in faces]
        scores, during = asd_tie_scores(speaking, labels, voices)
        metrics["tie_method"], metrics["tie_speaking"] = "light_asd", np.round(during, 3).tolist()
        tied_index, why = tie_voices(scores, -np.inf, mp.min_tie_logit_margin, "turn contrast")
        for f, i in enumerate(tied_index):
            if i is not None and during[i, f] < mp.min_tie_logit and not why:
                why = f"voice {i}: face {f} is not judged speaking in its turns (mean logit {during[i, f]:.2f})"
    if why:  # Light-ASD absent or undecided (faces that all articulate): mouth motion against loudness
        landmarker = resolve_landmarker(config.faces.landmarker)
        motions = [_mouth_motion(analyze_landmarks(media, f.boxes, landmarker).jaw_open) for f in faces]
        envelope = _smooth(speech_band_envelope(media.audio, media.rate, media.fps, n))
        scores = np.array([[_corr(m, envelope * (labels == v)) for m in motions] for v in voices])
        if asd is not None:  # a face Light-ASD judges silent in a voice's turns is never that voice's
            scores = np.where(during >= mp.min_tie_logit, scores, -1.0)
        metrics["tie_method"] = "mouth_motion" if asd is None else "mouth_motion+light_asd"
        tied_index, why = tie_voices(scores, mp.min_tie_correlation, mp.min_tie_margin)
    tied = [voices[i] if i is not None else None for i in tied_index]
    metrics["tie_scores"] = np.round(scores, 3).tolist()
    result = MultiPersonResult(clip.clip_id, None, "", boxes, tied, labels, metrics["tie_scores"], metrics)
    if why:
        result.rejected, result.detail = Reason.SPEAKERS_UNTIED, why
    return result
