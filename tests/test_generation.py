"""Generation on AnyTalker's own example inputs with a tiny random model saved and loaded in the
real formats: the videos' frames, size, fps and audio; determinism; and each audio track reaching
the identity it is bound to, left to right."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED

from tasks.evaluation.generation_inputs import (
    arrange_tracks,
    detect_faces,
    face_crops,
    face_masks,
    frame_count,
    load_image,
    load_track,
    read_batch,
    video_size,
)  # fmt: skip

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = SHARED / "anytalker" / "input_example"
BATCH = EXAMPLES / "customize_your_input_here.json"
AREA = 96 * 64  # tiny videos: the tiny model's VAE and DiT run in seconds on a CPU


@pytest.fixture(scope="module")
def examples(shared_models) -> Path:
    if not BATCH.is_file():
        pytest.skip(f"../shared/anytalker is not here ({EXAMPLES}); CI has it, a user's machine may not")
    return BATCH


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from model.config import load_run_config
    from model.folder import init_model

    os.environ.setdefault("ANYTALKER_CACHE", str(tmp_path_factory.mktemp("cache")))
    return init_model(load_run_config(ROOT / "configs" / "tiny.yaml"), tmp_path_factory.mktemp("models") / "tiny")


def _probe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                          "stream=codec_type,width,height,r_frame_rate,nb_read_frames,duration", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return {s["codec_type"]: s for s in json.loads(out)["streams"]}


def _decode(path: Path) -> np.ndarray:
    from shards.codec import decode_video

    return decode_video(path.read_bytes())[0]


@pytest.fixture(scope="module")
def generated(prefect_server, examples, tiny_model, tmp_path_factory) -> tuple[Path, dict]:
    from flows.generate import SamplingOptions, generate

    out = tmp_path_factory.mktemp("generated")
    result = generate(str(tiny_model), str(out), str(examples), options=SamplingOptions(steps=3, max_area=AREA))
    return out, result


def test_every_example_becomes_an_mp4_of_the_expected_shape(generated, examples) -> None:
    out, result = generated
    assert result["counts"] == {"written": 5, "skipped": 0, "failed": 0}, result["videos"]
    for request in read_batch(examples):
        row = next(r for r in result["videos"] if r["key"] == request.key)
        streams = _probe(Path(row["output"]))
        seconds = max(len(load_track(p)) for p in request.audio) / 16000
        frames = ((int(np.ceil(seconds * 24)) - 1) // 4) * 4 + 1
        h, w = load_image(request.image).shape[:2]
        expected_h, expected_w = video_size(h, w, AREA)
        video, audio = streams["video"], streams["audio"]
        print(f"{request.key}: {video['nb_read_frames']} frames {video['width']}x{video['height']} at "
              f"{video['r_frame_rate']}, audio {float(audio['duration']):.2f} s")  # fmt: skip
        assert int(video["nb_read_frames"]) == frames
        assert (video["width"], video["height"]) == (expected_w, expected_h)
        assert video["r_frame_rate"] == "24/1"
        assert abs(float(audio["duration"]) - frames / 24) < 0.05
        assert Path(row["output"]).name.startswith(f"{request.key}_audio0_")


def test_a_rerun_skips_what_exists(generated, examples, tiny_model) -> None:
    from flows.generate import SamplingOptions, generate

    out, first = generated
    before = {p: p.stat().st_mtime_ns for p in out.glob("*.mp4")}
    again = generate(str(tiny_model), str(out), str(examples), options=SamplingOptions(steps=3, max_area=AREA))
    assert again["counts"] == {"written": 0, "skipped": 5, "failed": 0}
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.mp4")} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "a temporary file was left"


def test_the_same_seed_gives_the_same_video(tiny_model, examples, tmp_path: Path) -> None:
    from flows.generate import SamplingOptions, generate_request
    from model.pipeline import TalkingVideoPipeline

    pipeline = TalkingVideoPipeline.from_pretrained(tiny_model)
    request = read_batch(examples)[0]
    videos = [_decode(Path(generate_request(pipeline, request, tmp_path / name, SamplingOptions(steps=3, max_area=AREA,
                                                                                              seed=seed))["output"]))
              for name, seed in (("a", 7), ("b", 7), ("c", 8))]  # fmt: skip
    assert np.array_equal(videos[0], videos[1])
    assert not np.array_equal(videos[0], videos[2])


def test_each_track_reaches_the_identity_it_is_bound_to(tiny_model, examples) -> None:
    """2p-0: the left track is identity 0 with the left face's mask and crop, the right track
    identity 1; replacing the right track changes identity 1's audio only, and the video."""
    from model.pipeline import TalkingVideoPipeline
    from tasks.curation.analysis.faces import resolve_face_models

    pipeline = TalkingVideoPipeline.from_pretrained(tiny_model)
    request = next(r for r in read_batch(examples) if r.key == "2p-0")
    image = load_image(request.image)
    boxes = detect_faces(image, 2, resolve_face_models("buffalo_l"))
    assert boxes[0, 0] < boxes[1, 0], "faces are not ordered left to right"
    h, w = video_size(*image.shape[:2], AREA)
    scale = np.array([w / image.shape[1], h / image.shape[0]] * 2)
    import cv2

    frame0 = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    masks = face_masks(boxes * scale, (h, w), (h // 16, w // 16))
    left, right = (load_track(p) for p in request.audio)
    other = load_track(EXAMPLES / "audios" / "2p-1-right.wav")
    calls = []
    hook = pipeline.model.register_forward_pre_hook(lambda m, args: calls.append(args[4].clone()))
    conds, videos = [], []
    for second in (right, other):
        tracks, _ = arrange_tracks([left, second], "pad")
        frames = frame_count(tracks.shape[1], 24)
        cond = pipeline.prepare(frame0, face_crops(image, boxes), masks, tracks, request.caption, frames)
        conds.append(cond)
        videos.append(pipeline.sample(cond, steps=2, progress=False))
    hook.remove()
    a, b = conds
    # identity 0 is the left track, encoded alone; only identity 1's audio differs between the two
    tracks = torch.from_numpy(arrange_tracks([left, right], "pad")[0])
    assert a.frames == b.frames  # the left track is the longer one in both
    alone = pipeline.encoders.audio_windows(tracks[None, :1], int(np.ceil(tracks.shape[1] / 16000 * 24)))
    torch.testing.assert_close(a.audio[0, 0], alone[0, 0, : a.frames])
    torch.testing.assert_close(a.audio[0, 0], b.audio[0, 0])
    assert not torch.allclose(a.audio[0, 1], b.audio[0, 1])
    # masks and face tokens: identity 0 on the left
    cols = torch.arange(a.masks.shape[-1], dtype=torch.float32)
    centre = (a.masks[0].sum(1) * cols).sum(-1) / a.masks[0].sum((1, 2))
    assert centre[0] < centre[1]
    # the sampler passes exactly these windows to the model: conditional, then zero for guidance
    assert len(calls) == 4 and torch.equal(calls[0][0], a.audio[0]) and calls[0][1].abs().max() == 0
    assert not np.array_equal(videos[0], videos[1])


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "anytalker", "generate", *args], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")})  # fmt: skip


@pytest.mark.slow
def test_bad_inputs_get_a_clear_error_and_no_file(tiny_model, examples, tmp_path: Path) -> None:
    out = tmp_path / "out"
    image, track = EXAMPLES / "images" / "1p-0.png", EXAMPLES / "audios" / "1p-0.wav"
    not_audio = tmp_path / "noise.wav"
    not_audio.write_bytes(b"RIFF0000WAVEjunk")
    cases = {
        "not a model folder": ["--model", str(tmp_path), "--image", str(image), "--audio", str(track)],
        "image not found": ["--model", str(tiny_model), "--image", str(tmp_path / "x.png"), "--audio", str(track)],
        "audio cannot be decoded": ["--model", str(tiny_model), "--image", str(image), "--audio", str(not_audio)],
        "2 audio tracks but 1 face": ["--model", str(tiny_model), "--image", str(image), "--audio", str(track),
                                      "--audio", str(track)],
    }  # fmt: skip
    for message, args in cases.items():
        proc = _cli(*args, "--out", str(out), "--steps", "2", "--max-area", "96x64")
        text = proc.stdout + proc.stderr
        assert proc.returncode != 0 and message in text, (message, text[-1500:])
        assert "Traceback" not in text, text[-1500:]
    assert not list(out.glob("**/*.mp4"))
