"""Inputs and outputs of generation, as AnyTalker's inference prepares them
(../shared/anytalker/README.md, "How their inference prepares inputs"): their batch JSON, audio
at 16 kHz, the n largest faces for n tracks sorted left to right, the video size and frame count,
soft face masks, and the final mp4 with the audio muxed. Plain functions, no model: the tensors
are model/pipeline.py's work.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from tasks.curation.analysis.faces import face_analysis
from tasks.curation.clipmedia import read_audio

AUDIO_RATE = 16000
AudioMode = Literal["pad", "concat"]


class GenerationInputError(ValueError):
    """A user's input that cannot be generated from; the message says which and why."""


@dataclass(frozen=True)
class GenerationRequest:
    key: str
    image: Path
    caption: str
    audio: tuple[Path, ...]  # bound to faces left to right


def _resolve(value: str, base: Path) -> Path:
    """A path of their JSON: relative to the JSON's folder, else to its parent (their examples
    say ./input_example/... from the folder above), else as given."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    for root in (base, base.parent):
        if (root / path).exists():
            return (root / path).resolve()
    return path.resolve()


def read_batch(path: str | Path) -> list[GenerationRequest]:
    """Their batch format: {key: {"image_path", "caption", "enhance_caption", "audio_list"}};
    `enhance_caption` wins when present, as their script uses it."""
    path = Path(path)
    if not path.is_file():
        raise GenerationInputError(f"input file not found: {path}")
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise GenerationInputError(f"{path}: not JSON ({exc})") from None
    if not isinstance(entries, dict) or not entries:
        raise GenerationInputError(f"{path}: expected {{key: {{image_path, caption, audio_list}}}}")
    requests = []
    for key, entry in entries.items():
        if not isinstance(entry, dict) or "image_path" not in entry or not entry.get("audio_list"):
            raise GenerationInputError(f"{path}: entry {key!r} needs image_path and a non-empty audio_list")
        caption = entry.get("enhance_caption") or entry.get("caption") or ""
        audio = tuple(_resolve(a, path.parent) for a in entry["audio_list"])
        requests.append(GenerationRequest(str(key), _resolve(entry["image_path"], path.parent), caption, audio))
    return requests


def load_image(path: Path) -> np.ndarray:
    """RGB uint8 (H, W, 3)."""
    if not path.is_file():
        raise GenerationInputError(f"image not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise GenerationInputError(f"image cannot be decoded: {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load_track(path: Path) -> np.ndarray:
    """float32 mono at 16 kHz (ffmpeg resamples and downmixes any format it can read)."""
    if not path.is_file():
        raise GenerationInputError(f"audio not found: {path}")
    audio = read_audio(path, AUDIO_RATE)
    if audio.size == 0:
        raise GenerationInputError(f"audio cannot be decoded (no audio stream ffmpeg can read): {path}")
    return audio


def arrange_tracks(tracks: list[np.ndarray], mode: AudioMode) -> tuple[np.ndarray, np.ndarray]:
    """(per-identity tracks (N, S) on one timeline, the mix to mux (S,)). pad: every track from
    time 0, zero-padded to the longest, mixed by summing; concat: track i starts when track i-1
    ends (the others are silent meanwhile), and the mix plays them one after another."""
    if mode == "pad":
        length = max(len(t) for t in tracks)
        starts = [0] * len(tracks)
    elif mode == "concat":
        starts = list(np.cumsum([0] + [len(t) for t in tracks[:-1]]))
        length = sum(len(t) for t in tracks)
    else:
        raise GenerationInputError(f"audio mode is pad or concat, got {mode!r}")
    placed = np.zeros((len(tracks), length), np.float32)
    for i, (track, start) in enumerate(zip(tracks, starts, strict=True)):
        placed[i, start : start + len(track)] = track
    return placed, np.clip(placed.sum(0), -1.0, 1.0)


def frame_count(samples: int, fps: float, rate: int = AUDIO_RATE) -> int:
    """F = ((ceil(duration x fps) - 1) // 4) * 4 + 1: the longest 4k+1 the audio covers."""
    frames = math.ceil(samples / rate * fps)
    if frames < 5:
        raise GenerationInputError(f"audio of {samples / rate:.2f} s is too short: at least {5 / fps:.2f} s")
    return ((frames - 1) // 4) * 4 + 1


def video_size(height: int, width: int, max_area: int, multiple: int = 32) -> tuple[int, int]:
    """(H, W) with at most `max_area` pixels, the image's aspect, sides multiples of `multiple`."""
    scale = math.sqrt(max_area / (height * width))
    h = max(multiple, int(height * scale) // multiple * multiple)
    w = max(multiple, int(width * scale) // multiple * multiple)
    return h, w


def square_box(box: np.ndarray, height: int, width: int) -> np.ndarray:
    """The box made square around its centre (side = its longer side), clipped to the image."""
    x0, y0, x1, y1 = box
    cx, cy, side = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)
    return np.array([max(0.0, cx - side / 2), max(0.0, cy - side / 2), min(width, cx + side / 2), min(height, cy + side / 2)])


def detect_faces(image: np.ndarray, count: int, face_model: str) -> np.ndarray:
    """(count, 4) square boxes x0, y0, x1, y1 of the `count` largest faces, left to right."""
    app = face_analysis(face_model)
    faces = app.get(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if len(faces) < count:
        raise GenerationInputError(
            f"{count} audio tracks but {len(faces)} face(s) found in the image: give at most one track per visible face"
        )
    boxes = sorted((np.asarray(f.bbox, np.float64) for f in faces), key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)
    chosen = sorted(boxes[:count], key=lambda b: (b[0] + b[2]) / 2)
    h, w = image.shape[:2]
    return np.stack([square_box(b, h, w) for b in chosen])


def face_crops(image: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
    return [image[int(y0) : max(int(y0) + 1, int(y1)), int(x0) : max(int(x0) + 1, int(x1))] for x0, y0, x1, y1 in boxes]


def face_masks(boxes: np.ndarray, image_size: tuple[int, int], grid: tuple[int, int],
               expand: tuple[float, float] = (1.2, 1.1)) -> np.ndarray:  # fmt: skip
    """(N, h, w) soft masks on the patch grid: each box expanded (width x1.2, height x1.1) as a
    full-resolution mask, resized bilinearly to the grid."""
    height, width = image_size
    masks = []
    for x0, y0, x1, y1 in boxes:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        hw, hh = (x1 - x0) * expand[0] / 2, (y1 - y0) * expand[1] / 2
        full = np.zeros((height, width), np.float32)
        full[max(0, int(cy - hh)) : int(math.ceil(cy + hh)), max(0, int(cx - hw)) : int(math.ceil(cx + hw))] = 1.0
        masks.append(cv2.resize(full, (grid[1], grid[0]), interpolation=cv2.INTER_LINEAR))
    return np.stack(masks)


def output_name(key: str, audio: tuple[Path, ...], guidance: float) -> str:
    """Their name: <key>_audio0_<name>_audio1_<name>_cfg_<scale>.mp4."""
    tracks = "_".join(f"audio{i}_{p.stem}" for i, p in enumerate(audio))
    return f"{key}_{tracks}_cfg_{guidance:g}.mp4"


def write_video(path: Path, frames: np.ndarray, fps: float, audio: np.ndarray, rate: int = AUDIO_RATE) -> None:
    """(T, H, W, 3) uint8 -> H.264 mp4 at `fps` with the audio as AAC, cut or padded to the video's length.
    Written beside `path` and renamed into place: no partial file is ever visible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t, h, w, _ = frames.shape
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".gen-") as tmp:
        wav = Path(tmp) / "audio.f32"
        track = np.zeros(int(round(t / fps * rate)), np.float32)  # exactly the video's length
        track[: min(len(track), len(audio))] = audio[: len(track)]
        wav.write_bytes(track.tobytes())
        partial = Path(tmp) / "video.mp4"
        cmd = [
            "ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps:g}",
            "-i", "-", "-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", str(wav),
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-c:a", "aac", "-b:a", "128k",
            "-movflags", "+faststart", str(partial),
        ]  # fmt: skip
        proc = subprocess.run(cmd, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg could not write {path.name}: {proc.stderr.decode(errors='replace')[-500:]}")
        os.replace(partial, path)
