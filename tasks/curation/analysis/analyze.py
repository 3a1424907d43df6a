"""The per-clip analysis chain: decode once, then faces, quality, speech, singing (held notes),
who speaks (Light-ASD, when its weights are given), lips and eyes, sync (with phone timing for
English), and the verdict. Per-frame arrays go to a
sidecar `.npz` (boxes, Light-ASD scores, mouth, eye points, identity
embedding) and the transcript to a sidecar `.json`, both written atomically beside the catalog.
"""

from __future__ import annotations

import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tasks.config import CurateConfig
from tasks.curation.analysis.asd import face_scores, light_asd, speaking_share
from tasks.curation.analysis.faces import analyze_faces, face_analysis, resolve_face_models, sample_step
from tasks.curation.analysis.landmarks import analyze_landmarks, resolve_landmarker
from tasks.curation.analysis.phones import align_phones
from tasks.curation.analysis.quality import analyze_quality
from tasks.curation.analysis.singing import analyze_singing
from tasks.curation.analysis.speech import SpeechResult, speech_worker
from tasks.curation.analysis.sync import estimate_offset, shift_audio, syncnet_offset
from tasks.curation.analysis.syncnet import load_syncnet
from tasks.curation.clipmedia import ClipMedia, read_clip
from tasks.curation.verdict import STAGE2_REASONS, early_rejection, judge, sync_is_confident
from tasks.models import ModelsMissing, load_once
from tasks.records import Reason
from tasks.workdir import sidecar_base


@dataclass(frozen=True)
class ClipAnalysis:
    clip_id: str
    metrics: dict
    rejected: Reason | None
    sidecar: str
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage, for benchmarks/analyze.py


@dataclass(frozen=True)
class ClipFailure:
    """A clip whose analysis raised: it is recorded as internal_error with this text."""

    clip_id: str
    error: str


@contextmanager
def _timed(seconds: dict[str, float], stage: str):
    start = time.perf_counter()
    yield
    seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - start


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.part")
    with open(temp, "wb") as fh:
        write(fh)
    os.replace(temp, path)


def check_models(config: CurateConfig) -> None:
    """Load the models once up front, so a missing folder is one clear error, not a rejection per clip."""
    gpus = config.cluster.analyze_gpus
    face_analysis(resolve_face_models(config.faces.model), gpus)
    resolve_landmarker(config.faces.landmarker)
    speech_worker(config.speech, gpus)
    if light_asd(config.speaker.model, gpus) is None:
        logging.getLogger(__name__).warning(
            "who-speaks check left out: no Light-ASD weights (speaker.model or ANYTALKER_LIGHT_ASD); "
            "not_the_speaker is not judged and stage 2 ties voices by mouth motion"
        )
    if config.sync.backend == "syncnet":
        _syncnet(config)


def _syncnet(config: CurateConfig):
    path = config.sync.syncnet_model
    if not path or not Path(path).expanduser().is_file():
        raise ModelsMissing(f"sync.backend is syncnet but sync.syncnet_model is not a file: {path}")
    return load_once("syncnet", path, lambda: load_syncnet(Path(path).expanduser()))


def analyze_clip(path: str | Path, source_id: str, clip_id: str, workdir: Path, config: CurateConfig) -> ClipAnalysis:
    """Analyse a standard clip already on disk; an accepted clip with a confident sync offset has
    its audio moved into place in the file."""
    path = Path(path)
    started = time.perf_counter()
    media = read_clip(path, config.faces.analysis_max_side)
    decoded = time.perf_counter() - started
    result = analyze_media(media, source_id, clip_id, workdir, config)
    result.seconds["decode"] = decoded
    if shift := result.metrics.get("sync_shifted_frames"):
        shift_audio(path, media.audio, media.rate, shift, media.fps)
    return result


def analyze_media(media: ClipMedia, source_id: str, clip_id: str, workdir: Path, config: CurateConfig) -> ClipAnalysis:
    """Analyse one clip's decoded frames and audio. Stages run cheapest first; unless
    `every_metric` is set, a clip that an early check already rejects (by `early_rejection`, so
    with the verdict it would get anyway) skips the stages after it and keeps the metrics
    measured so far. `sync_shifted_frames` says by how much the clip's audio is to be moved
    (accepted clips with a confident offset); whoever writes the clip applies it."""
    seconds: dict[str, float] = {}
    gpus = config.cluster.analyze_gpus  # the models run on the task's GPU, where it has one (tasks.models)
    with _timed(seconds, "faces"):
        faces = analyze_faces(media, resolve_face_models(config.faces.model), config.faces.sample_fps,
                              config.faces.count_min_ratio, gpus, config.faces.min_detect_px)  # fmt: skip
    metrics: dict = {"analyzed": True, **faces.metrics()}
    step = sample_step(media.fps, config.faces.sample_fps)
    with _timed(seconds, "quality"):
        metrics.update(analyze_quality(media, faces.boxes, step).metrics())

    def go_on(*keep_going: Reason) -> bool:
        early = early_rejection(metrics, config.verdict)
        return config.every_metric or early is None or early in keep_going

    speech = SpeechResult(0.0, None, "")
    if go_on(*STAGE2_REASONS):  # stage 2 reads a multi-person clip's voices and turns
        with _timed(seconds, "speech"):
            speech = speech_worker(config.speech, gpus).analyze_audio(media.audio)
        metrics.update(speech.metrics())
        if speech.speech_regions:
            with _timed(seconds, "singing"):
                metrics.update(analyze_singing(media.audio, speech.speech_regions, media.rate).metrics())
    landmarks = None
    sync = None
    phones = None
    speaking = None
    asd = light_asd(config.speaker.model, gpus)
    if asd is not None and faces.embedding is not None and speech.speech_regions and go_on():
        with _timed(seconds, "speaker"):
            speaking = face_scores(asd, media.frames, media.fps, faces.boxes / media.scale, media.audio, media.rate)
        share = speaking_share(speaking, speech.speech_regions, media.fps)
        if share is not None:
            metrics["face_speaking"] = round(share, 3)
    if faces.embedding is not None and go_on():
        with _timed(seconds, "landmarks"):
            landmarks = analyze_landmarks(media, faces.boxes, resolve_landmarker(config.faces.landmarker))
        metrics["landmarks_found"] = round(landmarks.found_ratio, 3)
        if speech.speech_ratio > 0 and landmarks.found_ratio > 0.5:
            with _timed(seconds, "sync"):
                if config.sync.backend == "syncnet":
                    sync = syncnet_offset(_syncnet(config), media, faces.boxes, config.sync.search_frames)
                else:
                    english = (speech.language or "").startswith("en") and config.sync.phones
                    phones = align_phones(media.audio, speech.transcript, media.rate) if english else None
                    sync = estimate_offset(media, landmarks, config.sync.search_frames, phones)
            metrics.update(sync.metrics())
    rejected = judge(metrics, config.verdict)
    if rejected is None and sync is not None and sync.offset_frames and sync_is_confident(metrics, config.verdict):
        metrics["sync_shifted_frames"] = sync.offset_frames
    base = sidecar_base(workdir, source_id, clip_id)
    arrays = {"boxes": faces.boxes}
    if faces.embedding is not None:
        arrays["embedding"] = faces.embedding
    if speaking is not None:
        arrays["speaking"] = speaking  # Light-ASD logit per frame: > 0, the face is the one speaking
    if landmarks is not None:
        arrays.update(
            mouth_open=landmarks.mouth_open, jaw_open=landmarks.jaw_open, lip_motion=landmarks.lip_motion,
            eye_points=landmarks.eye_points,
        )
    _atomic_write(base.with_suffix(".npz"), lambda fh: np.savez_compressed(fh, **arrays))
    text = {
        "transcript": speech.transcript, "language": speech.language, "words": speech.words, "turns": speech.turns,
        "speech_regions": speech.speech_regions, "sync_distances": sync.distances if sync else [],
        "phones": [[p.name, round(p.start_s, 3), round(p.end_s, 3)] for p in phones or []],
    }  # fmt: skip
    _atomic_write(base.with_suffix(".json"), lambda fh: fh.write(json.dumps(text).encode()))
    return ClipAnalysis(clip_id, metrics, rejected, str(base), seconds)
