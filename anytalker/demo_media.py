"""Synthetic demo media: talking clips made from real face photos, plus deliberate negatives.

SYNTHETIC DATA. Every file written here is made by this module and says so in its name
(`synthetic_*`) and in its container metadata. The faces are real photographs that the
insightface wheel ships (`t1.jpg`, a group photo of six, and `Tom_Hanks_54745.png`, an aligned
112x112 portrait); the speech is espeak-ng; the mouth is animated from the speech envelope
(jaw drop plus a dark inner mouth). Nothing from ../shared is used, so the demo runs anywhere.

The face boxes and mouth corners below were measured once on those exact images with
insightface's SCRFD detector; they are constants of the shipped files, not guesses.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

FPS = 25
SIZE = 384  # output frames are SIZE x SIZE
SYNTHETIC_TAG = "synthetic demo data made by anytalker.demo_media"


@dataclass(frozen=True)
class Face:
    """A face in a shipped photo: its box and mouth corners, in that photo's pixels."""

    image: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1
    mouth_left: tuple[float, float]
    mouth_right: tuple[float, float]


FACES = {
    "a": Face("t1.jpg", (745, 339, 845, 480), (763, 437), (805, 441)),
    "b": Face("t1.jpg", (465, 265, 573, 416), (483, 367), (531, 378)),
    "c": Face("t1.jpg", (1131, 271, 1225, 398), (1154, 366), (1195, 362)),
    # The insightface portrait is an ArcFace-aligned crop: mouth corners sit at the template's points.
    "d": Face("Tom_Hanks_54745.png", (8, 0, 104, 112), (41.5, 92.4), (70.7, 92.2)),
}

LINES = {
    "a": ("en-us", "Good morning. Today we look at how the weather changes over the mountains in spring."),
    "b": ("en-gb", "I think the new library opens next week, and everyone in town is invited to see it."),
    "c": ("en-us+m3", "Please remember to bring your notes, because the meeting starts early tomorrow."),
    "d": ("en-gb-x-rp", "The train was late again, so we walked along the river and talked for an hour."),
}


# The benchmark's exchange is short: the evaluation detects faces on every frame of it.
BENCHMARK_LINES = {
    "a": ("en-us", "Hello. How was your trip?"),
    "b": ("en-gb", "Long, but the view was lovely."),
}


def _images_dir() -> Path:
    import insightface

    return Path(insightface.__file__).parent / "data" / "images"


def _speak(text: str, voice: str, out: Path) -> np.ndarray:
    """espeak-ng speech as float32 mono at 16 kHz."""
    raw = out.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text], check=True, capture_output=True)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(raw), "-ac", "1", "-ar", "16000", str(out)], check=True
    )
    raw.unlink()
    with wave.open(str(out)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0


def envelope(audio: np.ndarray, n_frames: int, rate: int = 16000) -> np.ndarray:
    """Mouth opening per video frame, 0..1, from the speech's RMS."""
    hop = rate // FPS
    rms = np.array([np.sqrt(np.mean(audio[i * hop : (i + 1) * hop] ** 2) + 1e-12) for i in range(n_frames)])
    ref = np.percentile(rms, 95) if rms.max() > 1e-4 else 1.0
    opening = np.clip(rms / ref, 0.0, 1.0)
    return np.convolve(opening, np.ones(3) / 3, mode="same")


def _portrait(face: Face) -> tuple[np.ndarray, np.ndarray, float]:
    """A square SIZE crop around the face; returns it with the mouth centre and width in it."""
    img = cv2.imread(str(_images_dir() / face.image))
    x0, y0, x1, y1 = face.box
    side = int(2.0 * max(x1 - x0, y1 - y0))
    pad = side
    img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    cx, cy = (x0 + x1) / 2 + pad, (y0 + y1) / 2 + pad
    left, top = int(cx - side / 2), int(cy - side / 2)
    crop = img[top : top + side, left : left + side]
    scale = SIZE / side
    crop = cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    ml = (np.array(face.mouth_left) + pad - (left, top)) * scale
    mr = (np.array(face.mouth_right) + pad - (left, top)) * scale
    return crop, (ml + mr) / 2, float(np.linalg.norm(mr - ml))


def animate_mouth(frame: np.ndarray, centre: np.ndarray, width: float, opening: float) -> np.ndarray:
    """Open the jaw by `opening` (0..1): pull the chin down and show a dark inner mouth."""
    h, w = frame.shape[:2]
    drop = opening * 0.45 * width
    if drop < 0.5:
        return frame
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    dx = (xs - centre[0]) / (1.1 * width)
    dy = (ys - centre[1]) / (1.6 * width)
    # Weight 1 on the mouth line, falling to 0 at the chin and the cheeks, ramping in over the upper lip.
    lip = np.clip((ys - centre[1] + 0.2 * width) / (0.2 * width), 0, 1)
    weight = np.clip(1 - dx**2, 0, 1) * np.clip(1 - dy, 0, 1) * lip
    map_y = (ys - drop * weight).astype(np.float32)
    out = cv2.remap(frame, xs, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mask = np.zeros((h, w), np.float32)
    axes = (max(1, int(0.36 * width)), max(1, int(drop / 2 + 1)))
    cv2.ellipse(mask, (int(centre[0]), int(centre[1] + drop / 2)), axes, 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), 1.5)[..., None]
    inner = np.array([30, 20, 45], np.float32)
    return (out * (1 - mask) + inner * mask).astype(np.uint8)


def _sway(frame: np.ndarray, t: int) -> np.ndarray:
    """A slow, small head movement so the picture is not frozen."""
    m = np.float32([[1, 0, 2.0 * np.sin(t / 17)], [0, 1, 1.5 * np.sin(t / 23)]])
    return cv2.warpAffine(frame, m, (frame.shape[1], frame.shape[0]), borderMode=cv2.BORDER_REPLICATE)


def _talking_frames(key: str, opening: np.ndarray) -> list[np.ndarray]:
    base, centre, width = _portrait(FACES[key])
    return [_sway(animate_mouth(base, centre, width, o), t) for t, o in enumerate(opening)]


def _write(frames: list[np.ndarray], audio: np.ndarray | None, out: Path) -> None:
    """Encode BGR frames (and optional 16 kHz audio) to an H.264 mp4, tagged as synthetic."""
    h, w = frames[0].shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["ffmpeg", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{w}x{h}",
               "-r", str(FPS), "-i", "-"]  # fmt: skip
        if audio is not None:
            wav = Path(tmp) / "a.wav"
            with wave.open(str(wav), "wb") as wf:
                wf.setnchannels(1)
                wf.setsampwidth(2)
                wf.setframerate(16000)
                wf.writeframes((np.clip(audio, -1, 1) * 32767).astype(np.int16).tobytes())
            cmd += ["-i", str(wav), "-c:a", "aac", "-b:a", "96k", "-shortest"]
        cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
                "-metadata", f"comment={SYNTHETIC_TAG}", str(out)]  # fmt: skip
        subprocess.run(cmd, input=b"".join(f.tobytes() for f in frames), check=True)


def _talking_clip(key: str, tmp: Path, line: tuple[str, str] | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    voice, text = line or LINES[key]
    speech = _speak(text, voice, tmp / f"{key}.wav")
    lead = np.zeros(int(0.3 * 16000), np.float32)  # a breath before the first word
    audio = np.concatenate([lead, speech, lead])
    n = int(len(audio) / 16000 * FPS)
    return _talking_frames(key, envelope(audio, n)), audio[: int(n / FPS * 16000)]


def make_demo_media(out_dir: Path) -> Path:
    """Write the demo set into `out_dir` (skipping files already there) and return it.

    Positives: four single-person talking clips (identities a-d). Negatives: a silent clip,
    a clip with two faces, a clip with a hard cut (two shots of two people), a file that is
    not a video. Every name starts with `synthetic_`.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmpname:
        tmp = Path(tmpname)
        for key in "abcd":
            target = out_dir / f"synthetic_talker_{key}.mp4"
            if not target.exists():
                frames, audio = _talking_clip(key, tmp)
                _write(frames, audio, target)
        target = out_dir / "synthetic_silent.mp4"
        if not target.exists():
            n = 4 * FPS
            _write(_talking_frames("a", np.zeros(n)), np.zeros(n * 16000 // FPS, np.float32), target)
        target = out_dir / "synthetic_two_faces.mp4"
        if not target.exists():
            frames_b, audio = _talking_clip("b", tmp)
            frames_c = _talking_frames("c", np.zeros(len(frames_b)))
            _write([np.hstack([fb, fc]) for fb, fc in zip(frames_b, frames_c, strict=True)], audio, target)
        target = out_dir / "synthetic_hard_cut.mp4"
        if not target.exists():
            frames_c, audio_c = _talking_clip("c", tmp)
            frames_d, audio_d = _talking_clip("d", tmp)
            _write(frames_c + frames_d, np.concatenate([audio_c, audio_d]), target)
        target = out_dir / "synthetic_not_a_video.mp4"
        if not target.exists():
            target.write_text("SYNTHETIC demo negative: this is a text file named like a video.\n")
    return out_dir


def make_demo_benchmark(out_dir: Path) -> Path:
    """A two-person benchmark item in AnyTalker's layout (tasks/evaluation/benchmark.py), synthetic like the
    rest: talkers a (left) and b (right) side by side in the reference frame; a speaks first,
    then b, each on its own track; and the "recording" of the two (the benchmark's real video,
    scored once as the reference). The evaluate deployment generates and scores it."""
    from tasks.evaluation.benchmark import DURATIONS, write_benchmark

    if (out_dir / DURATIONS).is_file():
        return out_dir
    with tempfile.TemporaryDirectory() as tmpname:
        frames_a, audio_a = _talking_clip("a", Path(tmpname), BENCHMARK_LINES["a"])
        frames_b, audio_b = _talking_clip("b", Path(tmpname), BENCHMARK_LINES["b"])
    left = np.concatenate([audio_a, np.zeros_like(audio_b)])
    right = np.concatenate([np.zeros_like(audio_a), audio_b])
    split = len(audio_a) / 16000
    image = cv2.cvtColor(np.hstack([frames_a[0], frames_b[0]]), cv2.COLOR_BGR2RGB)
    n = int(len(left) / 16000 * FPS)  # the "recording": each talks in turn, the other's mouth closed
    duo = [np.hstack(pair) for pair in zip(_talking_frames("a", envelope(left, n)), _talking_frames("b", envelope(right, n)),
                                           strict=True)]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmpname:
        recording = Path(tmpname) / "synthetic_duo.mp4"
        _write(duo, left + right, recording)
        write_benchmark(out_dir, "synthetic_duo", [left, right], [[(0.0, split)], [(split, split + len(audio_b) / 16000)]],
                        image, video=recording)  # fmt: skip
    return out_dir


def prepare_demo_models(workdir: Path) -> tuple[Path | None, str]:
    """Find face models for the demo; returns (a config file or None, a note for the user).

    Order: what the environment and the default config name (downloads on a machine with
    internet); else the shared folder's models (ANYTALKER_SHARED, else ../shared beside this
    checkout: the project's CI layout, as tests/conftest.py finds it); else a config that turns
    analysis off, with a note on how to get the models.
    """
    from tasks.config import CurateConfig
    from tasks.curation.analysis.analyze import check_models
    from tasks.models import ModelsMissing

    shared = Path(os.environ.get("ANYTALKER_SHARED") or Path(__file__).resolve().parents[2] / "shared") / "models"
    for env, name in (("ANYTALKER_IDENTITY_MODEL", "mobilefacenet_arcface.onnx"),
                      ("ANYTALKER_LIGHT_ASD", "lightasd_finetuning_TalkSet.model")):  # the evaluation's, when there
        if (shared / name).is_file():
            os.environ.setdefault(env, str(shared / name))
    try:
        check_models(CurateConfig())
        return None, ""
    except ModelsMissing as first:
        if (shared / "mobilefacenet.onnx").exists() and (shared / "face_landmarker.task").exists():
            pack = workdir / "face-pack"
            pack.mkdir(parents=True, exist_ok=True)
            for name in ("scrfd_2.5g_bnkps.onnx", "mobilefacenet.onnx"):
                if not (pack / name).exists():
                    (pack / name).symlink_to(shared / name)
            os.environ["ANYTALKER_FACE_MODELS"] = str(pack)
            os.environ["ANYTALKER_FACE_LANDMARKER"] = str(shared / "face_landmarker.task")
            return None, f"face models: using {shared} (no model zoo reachable)"
        config = workdir / "demo-no-analysis.yaml"
        config.write_text("analyze: false\n")
        return config, f"analysis skipped: {first}"
