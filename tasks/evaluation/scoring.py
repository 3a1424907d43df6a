"""Score videos against a benchmark: every metric of one video, and a folder of them.

A video belongs to the benchmark item whose name it starts with (`interact_11.mp4`, or the
generate flow's `interact_11_audio0_..._cfg_4.5.mp4`). Per video: the N largest faces in every
frame, left to right (identity i is audio track i); then interactivity (tasks/evaluation/interactivity.py),
lip sync of each face against its own track (tasks/evaluation/identity_sync.py), identity similarity to
the reference frame (tasks/evaluation/face_identity.py) and who speaks when (tasks/curation/analysis/asd.py). A metric whose
model is not configured, or that has nothing to measure (no face found), is left out with a
note: never filled in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from tasks.curation.clipmedia import first_frame, read_audio, read_clip
from tasks.evaluation.benchmark import BenchmarkItem, read_benchmark, voice_intervals

# Which way each metric is better: True when higher is.
HIGHER_IS_BETTER = {
    "interactivity": True, "sync_c": True, "sync_d": False, "sync_abs_offset": False, "sync_estimate_confidence": True,
    "sync_estimate_abs_offset": False,
    "sync_estimate_in_step": True,
    "identity_similarity": True, "asd_agreement": True, "asd_silent_speaking": False, "fvd": False,
}  # fmt: skip


class GateConfig(BaseModel):
    """The promotion rule: beat the incumbent on `primary`, regress no guard beyond its tolerance."""

    model_config = ConfigDict(extra="forbid")
    primary: str = Field("interactivity", description="The metric a new run must beat the incumbent on.")
    min_gain: float = Field(0.0, ge=0, description="By at least this much.")
    guards: dict[str, float] = Field(
        default_factory=lambda: {"identity_similarity": 0.02, "asd_agreement": 0.05},
        description="Metric -> the largest regression tolerated.",
    )


class EvaluationConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    face_model: str | None = Field(
        None, description="insightface folder or pack (default: faces.model / ANYTALKER_FACE_MODELS)."
    )
    landmarker: str | None = Field(None, description="face_landmarker.task (default: ANYTALKER_FACE_LANDMARKER).")
    identity_model: str | None = Field(None, description="ArcFace MobileFaceNet ONNX (or ANYTALKER_IDENTITY_MODEL).")
    light_asd: str | None = Field(
        None, description="Light-ASD weights (or ANYTALKER_LIGHT_ASD); who-speaks is left out without."
    )
    syncnet: str | None = Field(None, description="syncnet_v2.model: Sync-C/Sync-D; the weight-free estimate without.")
    i3d: str | None = Field(
        None, description="I3D TorchScript: FVD against the benchmark's real videos; not reported without."
    )
    min_face_score: float = Field(0.5, gt=0, lt=1, description="Faces below this detector score are not counted.")
    identity_every: int = Field(8, ge=1, description="Identity similarity on every n-th frame.")
    steps: int = Field(40, ge=1, description="Sampling steps when the evaluate flow generates the benchmark.")
    max_area: int = Field(832 * 480, ge=64 * 64, description="Generated video area at most (pixels).")
    gate: GateConfig = Field(default_factory=GateConfig)


def load_evaluation_config(path: str | Path | None) -> EvaluationConfig:
    if path is None:
        return EvaluationConfig()
    data = yaml.safe_load(Path(path).read_text()) or {}
    return EvaluationConfig.model_validate(data.get("evaluate", data))


@dataclass
class Models:
    """What the metrics load, resolved once per evaluation."""

    face_model: str
    landmarker: Path | None
    identity_model: Path | None
    light_asd: Any = None
    syncnet: Any = None
    i3d: Path | None = None
    notes: list[str] = field(default_factory=list)


def resolve_models(config: EvaluationConfig) -> Models:
    import os

    from tasks.config import FacesConfig
    from tasks.curation.analysis.faces import resolve_face_models
    from tasks.curation.analysis.landmarks import resolve_landmarker
    from tasks.evaluation.face_identity import resolve_identity_model
    from tasks.models import ModelsMissing

    notes = []
    face_model = config.face_model or resolve_face_models(FacesConfig().model)
    try:
        landmarker = resolve_landmarker(config.landmarker or FacesConfig().landmarker)
    except ModelsMissing as exc:
        landmarker, _ = None, notes.append(f"interactivity and lip sync left out: {exc}")
    from tasks.evaluation.interactivity import landmarks_106

    if landmarks_106(face_model) is None:
        notes.append("interactivity on MediaPipe's points (no insightface 2d106det in the face models): "
                     "not the official scale")  # fmt: skip
    try:
        identity = resolve_identity_model(config.identity_model)
    except ModelsMissing as exc:
        identity, _ = None, notes.append(f"identity similarity left out: {exc}")
    asd = None
    asd_path = os.environ.get("ANYTALKER_LIGHT_ASD") or config.light_asd
    if asd_path:
        from tasks.curation.analysis.asd import load_light_asd

        asd = load_light_asd(asd_path)
    else:
        notes.append("who-speaks left out: no Light-ASD weights (evaluate.light_asd or ANYTALKER_LIGHT_ASD)")
    syncnet = None
    if config.syncnet:
        from tasks.curation.analysis.syncnet import load_syncnet

        syncnet = load_syncnet(config.syncnet)
    else:
        notes.append("lip sync is the weight-free estimate (sync_estimate_*), not Sync-C/Sync-D: no syncnet_v2.model")
    i3d = Path(config.i3d) if config.i3d else None
    if i3d is None:
        notes.append("FVD not reported: no I3D TorchScript (evaluate.i3d)")
    return Models(face_model, landmarker, identity, asd, syncnet, i3d, notes)


@dataclass(frozen=True)
class Figure:
    item: str
    metric: str
    identity: str  # the side ("left", "0", ...) or "all"
    value: float


def item_for(video: Path, items: list[BenchmarkItem]) -> BenchmarkItem | None:
    """The item a video belongs to: the longest item name its stem equals or starts with + '_'."""
    stem = video.stem
    matches = [i for i in items if stem == i.name or stem.startswith(i.name + "_")]
    return max(matches, key=lambda i: len(i.name)) if matches else None


def _speaking(item: BenchmarkItem, tracks: list[np.ndarray]) -> list:
    """The item's intervals; an identity whose intervals are null gets them from its own track (VAD)."""
    return [list(s) if s is not None else voice_intervals(t) for s, t in zip(item.speaking, tracks, strict=True)]


def _reference_embeddings(item: BenchmarkItem, models: Models, config: EvaluationConfig) -> list[np.ndarray] | None:
    from tasks.evaluation.face_frames import detect_frames
    from tasks.evaluation.face_identity import embed_face
    from tasks.evaluation.generation_inputs import load_image

    if item.image is not None:
        image = load_image(item.image)
    elif item.video is not None:
        image = first_frame(item.video)
    else:
        return None
    faces = detect_frames(image[None], item.n, models.face_model, config.min_face_score)
    if np.isnan(faces.kps[0, :, 0, 0]).any():
        return None
    return [embed_face(image, faces.kps[0, i], models.identity_model) for i in range(item.n)]


def evaluate_video(
    video: Path, item: BenchmarkItem, models: Models, config: EvaluationConfig
) -> tuple[list[Figure], list[str]]:
    """Every metric of one video; the notes say what could not be measured and why."""
    from tasks.evaluation.face_frames import detect_frames

    media = read_clip(video, max_side=4096)
    frames, fps = media.frames, media.fps
    tracks = [read_audio(t) for t in item.tracks]
    speaking = _speaking(item, tracks)
    faces = detect_frames(frames, item.n, models.face_model, config.min_face_score)
    figures: list[Figure] = []
    notes: list[str] = []

    def add(metric: str, identity: str, value: float | None) -> None:
        if value is not None and np.isfinite(value):
            figures.append(Figure(item.name, metric, identity, round(float(value), 5)))

    found = [not np.isnan(faces.boxes[:, i, 0]).all() for i in range(item.n)]
    if not any(found):
        notes.append(f"{video.name}: no face found in any frame; only what needs no face is reported")
    if models.landmarker is not None:
        from tasks.evaluation.interactivity import interactivity

        result = interactivity(frames, fps, faces, speaking, models.landmarker, models.face_model)
        add("interactivity", "all", result.score)
        if result.reason:
            notes.append(f"{video.name}: interactivity -1 ({result.reason})")
        for side, value in zip(item.sides, result.per_identity, strict=True):
            add("interactivity", side, value)
        from tasks.evaluation.identity_sync import identity_sync

        for i, side in enumerate(item.sides):
            if found[i]:
                for metric, value in identity_sync(frames, fps, faces.boxes[:, i], tracks[i], models.landmarker,
                                                   models.syncnet, media.rate, speaking=speaking[i]).items():  # fmt: skip
                    add(metric, side, value)
    if models.identity_model is not None and any(found):
        from tasks.evaluation.face_identity import identity_similarity

        reference = _reference_embeddings(item, models, config)
        if reference is None:
            notes.append(f"{item.name}: the reference frame does not show {item.n} faces; identity similarity left out")
        else:
            sims = identity_similarity(reference, frames, faces.kps, models.identity_model, config.identity_every)
            for side, value in zip(item.sides, sims, strict=True):
                add("identity_similarity", side, value)
    if models.light_asd is not None:
        from tasks.curation.analysis.asd import who_speaks

        for i, side in enumerate(item.sides):
            if found[i]:
                result = who_speaks(
                    models.light_asd, frames, fps, faces.boxes[:, i], media.audio, speaking[i], media.rate
                )
                add("asd_agreement", side, result.agreement)
                add("asd_silent_speaking", side, result.silent_judged_speaking)
    for metric in sorted({f.metric for f in figures if f.identity != "all"}):
        if not any(f.metric == metric and f.identity == "all" for f in figures):
            values = [f.value for f in figures if f.metric == metric and f.identity != "all"]
            add(metric, "all", float(np.mean(values)))
    return figures, notes


def evaluate_folder(videos: Path, benchmark: Path, config: EvaluationConfig, progress=None) -> dict:
    """Every video of `videos` (a folder or one file) that belongs to an item of `benchmark`."""
    bench = read_benchmark(benchmark)
    items = bench.items
    models = resolve_models(config)
    paths = [videos] if videos.is_file() else sorted(videos.glob("*.mp4"))
    figures: list[Figure] = []
    notes = list(models.notes)
    if bench.skipped:
        names = ", ".join(s.split(":", 1)[0] for s in bench.skipped[:5]) + (", ..." if len(bench.skipped) > 5 else "")
        notes.append(f"benchmark: {len(bench.skipped)} listed videos lack their audio tracks and are left out ({names})")
    scored = []
    for path in paths:
        item = item_for(path, items)
        if item is None:
            notes.append(f"{path.name}: no benchmark item of that name; skipped")
            continue
        got, said = evaluate_video(path, item, models, config)
        figures += got
        notes += said
        scored.append(path)
        if progress:
            progress(path)
    if models.i3d is not None:
        from tasks.evaluation.fvd import fvd

        value = fvd(scored, [i.video for i in items if i.video is not None], models.i3d)
        if value is None:
            notes.append("FVD not reported: fewer than two videos on a side, or none of 16 frames")
        else:
            figures.append(Figure("*", "fvd", "all", round(value, 3)))
    return {"videos": [str(p) for p in scored], "figures": figures, "summary": summarise(figures), "notes": notes}


def summarise(figures: list[Figure]) -> dict[str, float]:
    """Per metric, the mean over videos of its overall ('all') figure."""
    out: dict[str, list[float]] = {}
    for f in figures:
        if f.identity == "all" and not (f.metric == "interactivity" and f.value == -1):  # -1: not measurable
            out.setdefault(f.metric, []).append(f.value)
    return {m: round(float(np.mean(v)), 5) for m, v in sorted(out.items())}


def to_json(result: dict) -> str:
    return json.dumps({**result, "figures": [f.__dict__ for f in result["figures"]]}, indent=2)
