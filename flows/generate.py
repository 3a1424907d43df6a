"""The generate flow: talking videos from reference images and per-person audio with a model
folder (an imported AnyTalker checkpoint, or a training run's model/), in AnyTalker's batch
format or for one clip.

Every request ends `written`, `skipped` (its output exists) or `failed` with the reason, in the
`generation` table artifact; one bad request never stops the others. Outputs are written
atomically and named as AnyTalker names them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from tasks.config import FacesConfig
from tasks.curation.analysis.faces import resolve_face_models
from tasks.evaluation.generation_inputs import (
    AudioMode,
    GenerationInputError,
    GenerationRequest,
    arrange_tracks,
    detect_faces,
    face_crops,
    face_masks,
    frame_count,
    load_image,
    load_track,
    output_name,
    read_batch,
    video_size,
    write_video,
)  # fmt: skip
from tasks.models import ModelsMissing


@dataclass(frozen=True)
class SamplingOptions:
    steps: int = 40
    guidance: float = 4.5
    shift: float = 3.0
    seed: int = 0
    max_area: int = 832 * 480
    audio_mode: AudioMode = "pad"
    face_model: str | None = None


def generate_request(pipeline, request: GenerationRequest, out_dir: Path, options: SamplingOptions) -> dict:
    """One request: inputs checked before the model runs, then prepare -> sample -> mux."""
    target = out_dir / output_name(request.key, request.audio, options.guidance)
    row = {"key": request.key, "output": str(target)}
    if target.is_file():
        return {**row, "status": "skipped", "reason": "output exists"}
    image = load_image(request.image)
    tracks, mix = arrange_tracks([load_track(p) for p in request.audio], options.audio_mode)
    boxes = detect_faces(image, len(request.audio), resolve_face_models(options.face_model or FacesConfig().model))
    frames = frame_count(tracks.shape[1], pipeline.fps)
    height, width = video_size(*image.shape[:2], options.max_area)
    scale = np.array([width / image.shape[1], height / image.shape[0]] * 2)
    frame0 = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    patch = pipeline.model.patch_size
    grid = (height // 8 // patch[1], width // 8 // patch[2])
    started = time.perf_counter()
    cond = pipeline.prepare(frame0, face_crops(image, boxes), face_masks(boxes * scale, (height, width), grid),
                            tracks, request.caption, frames)  # fmt: skip
    video = pipeline.sample(cond, options.steps, options.guidance, options.shift, options.seed)
    write_video(target, video, pipeline.fps, mix)
    return {**row, "status": "written", "reason": "", "frames": frames, "size": f"{width}x{height}",
            "faces": len(boxes), "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip


@task(name="generate-video", retries=0, cache_policy=NO_CACHE)  # the pipeline is not an input to hash
def generate_task(pipeline, request: GenerationRequest, out_dir: str, options: SamplingOptions) -> dict:
    try:
        return generate_request(pipeline, request, Path(out_dir), options)
    except (GenerationInputError, ModelsMissing) as exc:
        get_run_logger().warning("%s: %s", request.key, exc)
        return {"key": request.key, "output": "", "status": "failed", "reason": str(exc)}


@flow(name="generate", log_prints=True, persist_result=False)
def generate(
    model_dir: str, out_dir: str, input_json: str | None = None, image: str | None = None,
    audio: list[str] | None = None, caption: str = "", key: str | None = None,
    options: SamplingOptions = SamplingOptions(),
) -> dict:  # fmt: skip
    """Generate every request of `input_json` (AnyTalker's format), or one clip from `image` and
    `audio` (tracks bound to faces left to right), with the model folder `model_dir`."""
    from model.pipeline import TalkingVideoPipeline

    logger = get_run_logger()
    if input_json:
        requests = read_batch(input_json)
    elif image and audio:
        paths = tuple(Path(a).expanduser().resolve() for a in audio)
        requests = [GenerationRequest(key or Path(image).stem, Path(image).expanduser().resolve(), caption, paths)]
    else:
        raise GenerationInputError("give an input JSON, or an image and at least one audio track")
    pipeline = TalkingVideoPipeline.from_pretrained(model_dir)
    rows = [generate_task(pipeline, r, out_dir, options) for r in requests]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("written", "skipped", "failed")}
    create_table_artifact(key="generation", table=rows, description=f"Generated videos in {out_dir}: {counts}")
    logger.info("generation into %s: %s", out_dir, counts)
    return {"out": out_dir, "counts": counts, "videos": rows}
