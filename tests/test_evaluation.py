"""Evaluation on real footage: every metric, the benchmark commands, the store and the gate."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, SHARED, SHARED_MODELS, ffmpeg, session_prefect_env

BENCH = SHARED / "anytalker" / "benchmark"
ASD = SHARED_MODELS / "lightasd_finetuning_TalkSet.model"
ARCFACE = SHARED_MODELS / "mobilefacenet_arcface.onnx"
LANDMARKER = SHARED_MODELS / "face_landmarker.task"


@pytest.fixture(scope="session")
def bench() -> Path:
    if not (BENCH / "interact_11.mp4").is_file():
        pytest.skip(f"../shared/anytalker/benchmark is not here ({BENCH}); CI has it, a user's machine may not")
    return BENCH


@pytest.fixture(scope="session")
def frozen_11(bench: Path, tmp_path_factory) -> Path:
    """interact_11 with its first frame held for the whole clip (its audio kept), made with ffmpeg."""
    out = tmp_path_factory.mktemp("frozen") / "interact_11.mp4"
    ffmpeg("-i", str(bench / "interact_11.mp4"), "-filter_complex",
           "[0:v]trim=end_frame=1,loop=loop=-1:size=1,setpts=N/24/TB[v]", "-map", "[v]", "-map", "0:a",
           "-t", "8.54", "-r", "24", "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "copy", str(out))  # fmt: skip
    return out


def _faces(video: Path, n: int, first: int | None = None):
    """The video and its N faces per frame; with `first`, only its first frames (both)."""
    from dataclasses import replace

    from tasks.curation.clipmedia import read_clip
    from tasks.evaluation.face_frames import detect_frames

    media = read_clip(video, max_side=4096)
    media = replace(media, frames=media.frames[:first])
    return media, detect_frames(media.frames, n, os.environ["ANYTALKER_FACE_MODELS"])


@pytest.fixture(scope="session")
def interact_11_faces(bench: Path, shared_models: Path):
    return _faces(bench / "interact_11.mp4", 2)


def test_interactivity_of_a_real_benchmark_clip_beats_its_frozen_copy(bench, interact_11_faces, frozen_11) -> None:
    from tasks.evaluation.benchmark import read_benchmark
    from tasks.evaluation.interactivity import interactivity

    item = next(i for i in read_benchmark(bench).items if i.name == "interact_11")
    media, faces = interact_11_faces
    assert (faces.counts == 2).all(), "every frame of the benchmark clip shows its two people"
    real = interactivity(media.frames, media.fps, faces, list(item.speaking), LANDMARKER)
    fmedia, ffaces = _faces(frozen_11, 2)
    frozen = interactivity(fmedia.frames, fmedia.fps, ffaces, list(item.speaking), LANDMARKER)
    print(f"interactivity interact_11: {real.score:.4f} (per identity {real.per_identity}); frozen {frozen.score:.4f}")
    assert real.score > 0 and all(v is not None and v > 0 for v in real.per_identity)
    assert frozen.score < 0.2 * real.score and frozen.score < 0.1


def test_interactivity_is_minus_one_when_a_frame_lacks_a_face(shared_videos: Path, shared_models: Path) -> None:
    from tasks.evaluation.interactivity import interactivity

    media, faces = _faces(shared_videos / "PC-AVS__Input_00098.mp4", 2, first=50)
    result = interactivity(media.frames, media.fps, faces, [[], []], LANDMARKER)
    assert result.score == -1 and "faces, not 2" in result.reason


def test_lip_sync_per_identity_finds_a_shifted_track(shared_videos: Path, shared_models: Path) -> None:
    """A real talking clip against its own audio, and against that audio 10 frames late."""
    from tasks.evaluation.identity_sync import identity_sync

    media, faces = _faces(shared_videos / "PC-AVS__Input_00098.mp4", 1)
    hop = int(media.rate / media.fps)
    late = np.concatenate([np.zeros(10 * hop, np.float32), media.audio[: -10 * hop]])
    synced = identity_sync(media.frames, media.fps, faces.boxes[:, 0], media.audio, LANDMARKER)
    shifted = identity_sync(media.frames, media.fps, faces.boxes[:, 0], late, LANDMARKER)
    print(f"lip sync in step {synced}; audio 10 frames late {shifted}")
    assert synced["sync_estimate_abs_offset"] <= 2 < 8 <= shifted["sync_estimate_abs_offset"]
    assert "sync_c" not in synced, "the weight-free estimate is never reported as Sync-C"


@pytest.fixture(scope="session")
def two_person(shared_curated: Path):
    """The stage-2 control of the shard tests: two real talking clips side by side with known
    turns (left speaks frames 0-71, right 71-150, 25 fps), one track per person."""
    from tasks.catalog import Catalog
    from tasks.config import ComposeConfig
    from tasks.dataset.clip_library import load_library
    from tasks.dataset.compose import CompositePlan, Turn, render_composite

    clips = load_library(shared_curated)
    with Catalog(shared_curated) as catalog:
        names = {i.clip: Path(i.source).stem for i in catalog.items() if i.clip}
    by_name = {names[c.clip_id]: c for c in clips}
    man, woman = by_name["PC-AVS__Input_00098"], by_name["video-retalking__face_4"]
    plan = CompositePlan("control", (man.clip_id, woman.clip_id), (Turn(0, 71, (0,)), Turn(71, 150, (1,))), (0, 0))
    return render_composite(plan, {c.clip_id: c for c in clips}, ComposeConfig(frames=150, fps=25))


def test_in_a_composite_each_face_syncs_best_with_its_own_track(two_person) -> None:
    from tasks.evaluation.identity_sync import IN_STEP, identity_sync

    s = two_person
    spans = s.meta["speaking"]
    own = [identity_sync(s.video, s.fps, s.boxes[i], s.audio[i], LANDMARKER, speaking=spans[i]) for i in range(2)]
    other = [
        identity_sync(s.video, s.fps, s.boxes[i], s.audio[1 - i], LANDMARKER, speaking=spans[1 - i]) for i in range(2)
    ]
    print(f"composite lip sync, own track {own}; the other's {other}")
    for i in range(2):  # against its own track a face is in step; the other's (mostly silence here) is not
        assert own[i]["sync_estimate_abs_offset"] <= IN_STEP
        assert own[i]["sync_estimate_in_step"] > other[i]["sync_estimate_in_step"]


def test_who_speaks_follows_the_voices_and_drops_when_they_are_swapped(bench, interact_11_faces) -> None:
    """A real two-person recording with known turns (their benchmark clip and its intervals)."""
    from tasks.curation.analysis.asd import load_light_asd, who_speaks
    from tasks.evaluation.benchmark import read_benchmark

    model = load_light_asd(ASD)  # strict: the module matches lightasd-state-dict.tsv
    item = next(i for i in read_benchmark(bench).items if i.name == "interact_11")
    media, faces = interact_11_faces
    spans = item.speaking
    right = [who_speaks(model, media.frames, media.fps, faces.boxes[:, i], media.audio, spans[i]) for i in range(2)]
    swapped = [who_speaks(model, media.frames, media.fps, faces.boxes[:, i], media.audio, spans[1 - i]) for i in range(2)]
    agree, agree_swapped = np.mean([r.agreement for r in right]), np.mean([r.agreement for r in swapped])
    print(f"who speaks: agreement {[round(r.agreement, 3) for r in right]}, silent judged speaking "
          f"{[round(r.silent_judged_speaking, 3) for r in right]}; intervals swapped {[round(r.agreement, 3) for r in swapped]}")  # fmt: skip
    assert agree > 0.7, "well above chance (0.5)"
    assert agree_swapped < agree - 0.3


def test_identity_similarity_same_person_beats_different_people(shared_videos: Path, shared_models: Path) -> None:
    from tasks.evaluation.face_identity import embed_face

    embeddings = {}
    for name in ("PC-AVS__Input_00002", "PC-AVS__Pose_Source_517600055", "PC-AVS__Input_00098"):
        media, faces = _faces(shared_videos / f"{name}.mp4", 1, first=5)  # the first face is enough
        t = int(np.flatnonzero(~np.isnan(faces.kps[:, 0, 0, 0]))[0])
        embeddings[name] = embed_face(media.frames[t], faces.kps[t, 0], ARCFACE)
    same = float(embeddings["PC-AVS__Input_00002"] @ embeddings["PC-AVS__Pose_Source_517600055"])
    different = float(embeddings["PC-AVS__Input_00002"] @ embeddings["PC-AVS__Input_00098"])
    print(f"identity similarity: same person {same:.3f}, different people {different:.3f}")
    assert same > different + 0.2


def test_fvd_is_not_reported_without_i3d(tmp_path: Path) -> None:
    from tasks.evaluation.fvd import frechet_distance, fvd

    assert fvd([tmp_path / "a.mp4"], [tmp_path / "b.mp4"], None) is None
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 3))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(a, a + [2.0, 0, 0]) == pytest.approx(4.0, rel=1e-3)


@pytest.fixture(scope="session")
def short_bench(bench: Path, frozen_11: Path, tmp_path_factory) -> tuple[Path, Path, Path]:
    """interact_11's first 3 s as a benchmark of one item, with the real and the frozen video."""
    root = tmp_path_factory.mktemp("short-bench")
    bench_dir, real, frozen = root / "bench", root / "real", root / "frozen"
    for side in ("left", "right"):
        (bench_dir / f"audio_{side}").mkdir(parents=True)
        ffmpeg(
            "-i",
            str(bench / f"audio_{side}" / f"interact_11_{side}.wav"),
            "-t",
            "3",
            str(bench_dir / f"audio_{side}" / f"interact_11_{side}.wav"),
        )
    spans = json.loads((bench / "speaker_duration.json").read_text())["interact_11.mp4"]
    short = {side: [[a, min(b, 3.0)] for a, b in spans[side] if a < 3.0] for side in spans}
    (bench_dir / "speaker_duration.json").write_text(json.dumps({"interact_11.mp4": short}))
    for folder, source in ((real, bench / "interact_11.mp4"), (frozen, frozen_11)):
        folder.mkdir()
        ffmpeg(
            "-i",
            str(source),
            "-t",
            "3",
            "-c:v",
            "libx264",
            "-crf",
            "18",
            "-c:a",
            "aac",
            str(folder / "interact_11.mp4"),
        )
    return bench_dir, real, frozen


def _evaluate_cli(videos: Path, bench: Path, run: Path, runs: Path) -> subprocess.Popen:
    env = session_prefect_env(ANYTALKER_IDENTITY_MODEL=str(ARCFACE), ANYTALKER_LIGHT_ASD=str(ASD))
    return subprocess.Popen([str(ROOT / ".venv" / "bin" / "anytalker"), "evaluate", str(videos), "--benchmark", str(bench),
                             "--run", str(run), "--runs-root", str(runs), "--step", "1", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)  # fmt: skip


def test_the_gate_promotes_the_better_run_refuses_the_worse_and_survives_a_kill(
    short_bench, frozen_11, prefect_server, monkeypatch, tmp_path: Path
) -> None:
    from tasks.evaluation.metric_store import MetricStore

    bench_dir, real, frozen = short_bench
    runs = tmp_path / "runs"
    good, worse = runs / "run-good", runs / "run-worse"
    good.mkdir(parents=True), worse.mkdir()
    from conftest import published_events

    from flows.evaluate import score_videos

    monkeypatch.setenv("ANYTALKER_IDENTITY_MODEL", str(ARCFACE))
    monkeypatch.setenv("ANYTALKER_LIGHT_ASD", str(ASD))
    result = score_videos(str(real), str(bench_dir), str(real / "evaluation.json"), None, str(good), 1, str(runs))
    assert result["promoted"] and result["reason"].startswith("first run"), result
    (event,) = published_events("anytalker.model.promoted", "run", str(good.resolve()))
    assert event.payload["step"] == 1 and event.payload["metrics"]["interactivity"] > 0.3

    def best() -> tuple[str, int]:
        record = json.loads((runs / "best" / "promotion.json").read_text())
        return Path(record["run"]).name, record["step"]

    assert best() == ("run-good", 1) and (runs / "best").resolve() == good.resolve() / "releases" / "step-000001"

    # killed while it scores (the whole 8.5 s frozen clip takes a minute): nothing half-done
    long_frozen = tmp_path / "long"
    long_frozen.mkdir()
    (long_frozen / "interact_11.mp4").symlink_to(frozen_11)
    killed = _evaluate_cli(long_frozen, bench_dir, worse, runs)
    for line in killed.stderr:
        if "Beginning flow run" in line:
            break
    time.sleep(10)
    assert killed.poll() is None, "the evaluation ended before it could be killed"
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    with MetricStore(runs) as store:
        assert [Path(r).name for r, _, _ in store.evaluations()] == ["run-good"]
        assert len(store.decisions()) == 1
    assert best() == ("run-good", 1)

    again = _evaluate_cli(frozen, bench_dir, worse, runs)
    out, err = again.communicate(timeout=900)
    assert again.returncode == 0, err[-3000:]
    result = json.loads(out)
    print(f"gate: {result['reason']}; figures {result['summary']}")
    assert not result["promoted"] and "interactivity" in result["reason"] and "does not beat" in result["reason"]
    assert best() == ("run-good", 1) and not (worse / "releases").exists()
    with MetricStore(runs) as store:
        decisions = store.decisions()
        assert [(Path(d["run"]).name, d["promoted"]) for d in decisions] == [("run-good", 1), ("run-worse", 0)]
        good_summary = store.summary(str(good.resolve()), 1, "bench")
        worse_summary = store.summary(str(worse.resolve()), 1, "bench")
    assert good_summary["interactivity"] > worse_summary["interactivity"]
    assert json.loads((runs / "best" / "promotion.json").read_text())["metrics"] == good_summary


def _serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(folder), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_fetch_frames_takes_the_frame_at_its_time_and_refuses_offline(tmp_path: Path) -> None:
    from tasks.evaluation.fetch_frames import FetchError, FrameRequest, fetch_frame, fetch_frames

    site = tmp_path / "site"
    site.mkdir()
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=4", "-c:v", "libx264", "-pix_fmt", "yuv420p",
           str(site / "clip.mp4"))  # fmt: skip
    server, url = _serve(site)
    try:
        listing = tmp_path / "list.txt"
        listing.write_text(f"# video time name\n{url}/clip.mp4 2.0 interact_1\n{url}/clip.mp4 00:00:03 interact_2\n")
        done, failed = fetch_frames(tmp_path / "bench", listing)
    finally:
        server.shutdown()
    assert not failed and [p.name for p in done] == ["interact_1.jpg", "interact_2.jpg"]
    import cv2

    expected = tmp_path / "expected.jpg"
    ffmpeg("-ss", "2.0", "-i", str(site / "clip.mp4"), "-frames:v", "1", "-q:v", "2", str(expected))
    got, want = cv2.imread(str(done[0])).astype(float), cv2.imread(str(expected)).astype(float)
    other = cv2.imread(str(done[1])).astype(float)
    assert np.abs(got - want).mean() < 3 < np.abs(other - want).mean()
    with pytest.raises(FetchError, match="cannot download"):
        fetch_frame(FrameRequest("http://no-such-host.invalid/v.mp4", 1.0, "x"), tmp_path / "bench")
    assert not (tmp_path / "bench" / "images" / "x.jpg").exists()
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "anytalker"), "benchmark", "fetch-frames", str(tmp_path / "b2"),
                           "--list", str(tmp_path / "nope.txt")], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2 and "list not found" in proc.stderr and "Traceback" not in proc.stderr


def test_evaluate_cli_refuses_a_folder_that_is_no_benchmark(tmp_path: Path) -> None:
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "anytalker"), "evaluate", str(tmp_path), "--benchmark",
                           str(tmp_path)], capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2 and "speaker_duration.json" in proc.stderr and "Traceback" not in proc.stderr


def test_benchmark_build_from_a_curated_two_person_recording(two_person, prefect_server, tmp_path: Path) -> None:
    """The control recording (two real people, one mixed track) curated, taken by stage 2, and
    turned into a benchmark item: reference frame, one track per face, each face's intervals."""
    from flows.build_shards import build_shards
    from flows.curate import curate
    from shards.codec import encode_video, encode_wav
    from tasks.evaluation.benchmark import read_benchmark

    s = two_person
    (tmp_path / "v.mp4").write_bytes(encode_video(s.video, s.fps))
    (tmp_path / "a.wav").write_bytes(encode_wav(s.audio[0] + s.audio[1], 16000))
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    ffmpeg("-i", str(tmp_path / "v.mp4"), "-i", str(tmp_path / "a.wav"), "-c:v", "copy", "-c:a", "aac",
           str(incoming / "two_people.mp4"))  # fmt: skip
    config = tmp_path / "c.yaml"
    config.write_text("multiperson:\n  min_face_ratio: 0.5\n")
    work = tmp_path / "work"
    curate([str(incoming)], str(work), str(config))
    build_shards(str(work), str(tmp_path / "shards"), None, 0, str(config))
    bench = tmp_path / "bench"
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "anytalker"), "benchmark", "build", str(work), "--out", str(bench)],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (item,) = read_benchmark(bench).items
    assert item.sides == ("left", "right") and item.image is not None and item.video is not None
    left, right = item.speaking
    print(f"benchmark build: left speaks {left}, right {right}")
    assert left and left[0][0] < 0.5 and right and right[0][0] > 2.0, "the man speaks first, then the woman"
    from tasks.curation.clipmedia import read_audio

    left_track, right_track = (read_audio(t) for t in item.tracks)
    assert np.abs(left_track[int(3.5 * 16000) :]).max() == 0 and np.abs(right_track[: int(2.0 * 16000)]).max() == 0
    again = subprocess.run([str(ROOT / ".venv" / "bin" / "anytalker"), "benchmark", "build", str(work), "--out", str(bench)],
                           capture_output=True, text=True)  # fmt: skip
    assert again.returncode == 0 and len(read_benchmark(bench).items) == 1, "a rerun rewrites, never duplicates"


def test_a_release_is_frozen_while_the_run_retrains(tmp_path: Path) -> None:
    """RUNS/best serves the promoted step's model even after the run folder's model/ is rewritten."""
    import hashlib

    from model.config import load_run_config
    from model.folder import init_model
    from tasks.evaluation.promotion import current_best, incumbent_record, switch_best

    config = load_run_config(ROOT / "configs" / "tiny.yaml")
    run = tmp_path / "runs" / "set-a"
    init_model(config, run / "model", seed=0)

    def digest(folder: Path) -> str:
        return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())).hexdigest()

    before = digest(run / "model")
    switch_best(tmp_path / "runs", run, 30, {"run": str(run), "step": 30, "reason": "first"})
    init_model(config, run / "model", seed=1)  # the run resumes and writes a new model
    assert digest(run / "model") != before
    assert digest(current_best(tmp_path / "runs") / "model") == before
    assert incumbent_record(tmp_path / "runs")["step"] == 30


def test_the_gate_rule() -> None:
    from tasks.evaluation.promotion import decide
    from tasks.evaluation.scoring import GateConfig

    gate = GateConfig(primary="interactivity", guards={"identity_similarity": 0.02, "asd_silent_speaking": 0.05})
    old = {"interactivity": 0.5, "identity_similarity": 0.7, "asd_silent_speaking": 0.2}
    assert decide({"interactivity": 0.6, "identity_similarity": 0.69, "asd_silent_speaking": 0.24}, old, gate).promoted
    worse_guard = decide({"interactivity": 0.6, "identity_similarity": 0.6, "asd_silent_speaking": 0.2}, old, gate)
    assert not worse_guard.promoted and "identity_similarity" in worse_guard.reason
    lower_is_better = decide({"interactivity": 0.6, "identity_similarity": 0.7, "asd_silent_speaking": 0.3}, old, gate)
    assert not lower_is_better.promoted and "asd_silent_speaking" in lower_is_better.reason
    assert not decide(
        {"interactivity": 0.4, **{k: v for k, v in old.items() if k != "interactivity"}}, old, gate
    ).promoted
    assert not decide({"identity_similarity": 0.9}, None, gate).promoted, "the first run needs a measured primary"
    assert decide({"interactivity": 0.1}, None, gate).promoted


def test_speaking_intervals_from_each_identitys_own_track(bench: Path) -> None:
    """The VAD on their benchmark's per-person tracks recovers the intervals their JSON lists."""
    from tasks.curation.clipmedia import read_audio
    from tasks.evaluation.benchmark import read_benchmark, speaking_mask, voice_intervals

    item = next(i for i in read_benchmark(bench).items if i.name == "interact_11")
    for track, listed in zip(item.tracks, item.speaking, strict=True):
        found = voice_intervals(read_audio(track))
        print(f"{track.name}: VAD {found}, listed {listed}")
        truth, got = speaking_mask(listed, 200, 24.0), speaking_mask(found, 200, 24.0)
        assert (truth == got).mean() > 0.9
    assert voice_intervals(np.zeros(16000, np.float32)) == []


def test_the_evaluation_config_file_holds_the_defaults_and_bad_keys_fail(tmp_path: Path) -> None:
    from tasks.evaluation.scoring import EvaluationConfig, load_evaluation_config

    assert load_evaluation_config(ROOT / "configs" / "evaluate.yaml") == EvaluationConfig()
    bad = tmp_path / "bad.yaml"
    bad.write_text("evaluate:\n  gate:\n    primry: fvd\n")
    with pytest.raises(ValueError, match="primry"):
        load_evaluation_config(bad)
