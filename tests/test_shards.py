"""Multi-person training data from real footage: composites, stage-2 clips, shards, reader."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import published_events

from shards.reader import ReaderConfig, collate, face_masks, make_dataset
from shards.schema import Sample, SchemaError, member_names, to_members
from shards.writer import ShardWriter, complete_shards, read_index, shard_urls, write_index
from tasks.config import ComposeConfig, CurateConfig
from tasks.dataset.clip_library import load_library
from tasks.dataset.compose import plan_composites, render_composite
from tasks.dataset.identities import assign_identities, split_identities

SAME_PERSON = ("PC-AVS__Input_00002", "PC-AVS__Pose_Source_517600055")  # MANIFEST: same identity


def _clips_by_name(work: Path) -> tuple[list, dict[str, str]]:
    from tasks.catalog import Catalog

    clips = load_library(work)
    with Catalog(work) as catalog:
        names = {i.clip: Path(i.source).stem for i in catalog.items() if i.clip}
    return clips, names


@pytest.mark.slow
def test_composites_from_real_clips(shared_curated: Path, shared_models: Path) -> None:
    from tasks.curation.analysis.faces import face_analysis, resolve_face_models

    clips, names = _clips_by_name(shared_curated)
    assert len(clips) == 10
    assign_identities(clips, CurateConfig().shards.identity_threshold)
    by_name = {names[c.clip_id]: c for c in clips}
    assert by_name[SAME_PERSON[0]].identity == by_name[SAME_PERSON[1]].identity
    assert len({c.identity for c in clips}) == 9

    config = ComposeConfig(identities={2: 1.0, 3: 1.0, 4: 1.0})
    plans = plan_composites(clips, config, seed=7)
    assert plans == plan_composites(clips, config, seed=7)  # deterministic for a seed
    assert [p.clip_ids for p in plans] != [p.clip_ids for p in plan_composites(clips, config, seed=8)]
    uses = Counter(c for p in plans for c in p.clip_ids)
    assert max(uses.values()) <= config.max_uses
    assert {len(p.clip_ids) for p in plans} == {2, 3, 4}
    by_id = {c.clip_id: c for c in clips}
    for plan in plans:
        people = [by_id[c].identity for c in plan.clip_ids]
        assert len(set(people)) == len(people), "a composite holds one person twice"

    app = face_analysis(resolve_face_models(CurateConfig().faces.model))
    for n in (2, 3, 4):
        plan = next(p for p in plans if len(p.clip_ids) == n)
        sample = render_composite(plan, by_id, config)
        assert sample.fps == 24 and sample.meta["source_fps"] == 25  # curated at 25 fps, trained at 24
        assert sample.video.shape == (81, 480, 416 * n, 3)
        assert sample.boxes.shape == (n, 81, 4) and len(sample.audio) == n
        assert all(len(track) == 81 * 16000 // 24 for track in sample.audio)
        assert sample.meta["turns"][-1][1] == 81 and sample.meta["turns"][0][0] == 0
        for i in range(n):  # audio track i is silent wherever identity i listens, voiced where it speaks
            speaking = np.zeros(len(sample.audio[i]), bool)
            for start, end in sample.meta["speaking"][i]:
                speaking[int(round(start * 16000)) : int(round(end * 16000))] = True
            assert not sample.audio[i][~speaking].any()
            if speaking.any():  # with 4 people in 81 frames, one may only listen
                assert np.abs(sample.audio[i]).max() > 0.01
        # each identity's mask (smallest expansion) covers the face a detector finds in its place
        masks = face_masks(sample.boxes, (480, 416 * n), (480 // 4, 416 * n // 4), np.full(n, 1.3), np.full(n, 1.2))
        for t in range(0, 81, 10):
            faces = [f for f in app.get(np.ascontiguousarray(sample.video[t][..., ::-1])) if f.det_score > 0.6]
            assert faces, f"no face found in composite frame {t}"
            for face in faces:
                x0, y0, x1, y1 = np.clip(face.bbox, 0, [416 * n, 480, 416 * n, 480]).astype(int) // 4
                place = int(((x0 + x1) / 2) * 4 // 416)
                covered = masks[place, y0:y1, x0:x1].mean()
                assert covered > 0.9, (n, t, place, covered)


def _tiny_sample(key: str, frames: np.ndarray, n: int, speaker: str) -> Sample:
    """A small real-pixel sample (frames of a real clip) for writer and reader tests."""
    t, h, w = frames.shape[:3]
    boxes = np.tile(np.array([w * 0.25, h * 0.2, w * 0.75, h * 0.8], np.float32), (n, t, 1))
    audio = [np.sin(np.linspace(0, 200, int(t / 25 * 16000))).astype(np.float32) * 0.1 for _ in range(n)]
    return Sample(key, "single" if n == 1 else "composite", 1, frames, 25.0, audio, boxes,
                  [frames[0]] * n, {"identities": [f"{speaker}-{i}" for i in range(n)]})  # fmt: skip


@pytest.fixture(scope="module")
def real_frames(shared_videos: Path) -> np.ndarray:
    from shards.codec import decode_video

    frames, _ = decode_video((shared_videos / "PC-AVS__Audio_Source_00015.mp4").read_bytes(), size=(64, 64))
    return frames[:9]


_KILLER = """
import os, sys, numpy as np
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
from test_shards import _tiny_sample
from shards.writer import ShardWriter
frames = np.load({frames!r})
writer = ShardWriter({out!r}, max_count=3)
for k in range(12):
    if k == {kill_at}:
        os.kill(os.getpid(), 9)  # killed mid-shard: the open shard holds one sample
    writer.write(_tiny_sample(f"k{{k:02d}}", frames, 1 + k % 3, f"p{{k % 4}}"), "train")
"""


def _tar_keys(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return [m.name.split(".", 1)[0] for m in tar.getmembers() if m.name.endswith(".meta.json")]


def test_writer_killed_mid_shard_resumes_without_partials_or_duplicates(real_frames: np.ndarray, tmp_path: Path) -> None:
    out = tmp_path / "set"
    np.save(tmp_path / "frames.npy", real_frames)
    script = _KILLER.format(root=str(Path(__file__).parents[1]), tests=str(Path(__file__).parent),
                            frames=str(tmp_path / "frames.npy"), out=str(out), kill_at=7)  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert sorted(p.name for p in out.glob("*.tar")) == ["train-000000.tar", "train-000001.tar"]
    assert list(out.glob(".*.part")), "the killed shard should have been left as a hidden part"

    with ShardWriter(str(out), max_count=3) as writer:  # the rerun
        assert not list(out.glob(".*.part")), "leftover parts are removed at start"
        assert len(writer.done_keys) == 6
        written = [writer.write(_tiny_sample(f"k{k:02d}", real_frames, 1 + k % 3, f"p{k % 4}"), "train")
                   for k in range(12)]  # fmt: skip
    assert written == [False] * 6 + [True] * 6
    index = write_index(str(out))
    keys = [k for tar in sorted(out.glob("*.tar")) for k in _tar_keys(tar)]
    assert sorted(keys) == [f"k{k:02d}" for k in range(12)], "every sample exactly once"
    assert not list(out.glob(".*.part"))
    train = index["splits"]["train"]
    assert train["samples"] == 12 and len(train["shards"]) == 4
    assert train["n_identities"] == {"1": 4, "2": 4, "3": 4}
    for shard in train["shards"]:  # index.json matches the tar contents
        data = (out / shard["shard"]).read_bytes()
        assert shard["bytes"] == len(data) and shard["sha256"] == hashlib.sha256(data).hexdigest()
        assert shard["samples"] == len(_tar_keys(out / shard["shard"]))
    with tarfile.open(out / "train-000002.tar") as tar:
        names = [m.name for m in tar.getmembers()]
    assert sorted(n.split(".", 1)[1] for n in names if n.startswith("k06.")) == sorted(member_names(1))


def _read_keys(out: Path, rank: int, world: int, workers: int) -> list[str]:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world))
    try:
        config = ReaderConfig(height=64, width=96, latent_grid=(8, 12), face_size=32, shuffle_buffer=4)
        # spawn: forking a test process that runs Prefect's server threads is not safe
        loader = torch.utils.data.DataLoader(make_dataset(shard_urls(str(out), "train"), config), batch_size=2,
                                             num_workers=workers, collate_fn=collate,
                                             multiprocessing_context="spawn")  # fmt: skip
        keys = []
        for batch in loader:
            n = batch["audio"].shape[1]
            assert batch["video"].shape[1:] == (9, 3, 64, 96) and batch["video"].dtype == torch.uint8
            assert batch["masks"].shape[1:] == (n, 8, 12) and batch["faces"].shape[2:] == (3, 32, 32)
            for b, count in enumerate(batch["identity_mask"].sum(1).tolist()):
                assert batch["masks"][b, :count].flatten(1).sum(1).min() > 0  # every real identity has a mask
                assert batch["masks"][b, count:].sum() == 0  # padding identities have none
            keys += batch["key"]
        return keys
    finally:
        del os.environ["RANK"], os.environ["WORLD_SIZE"]


def test_reader_two_nodes_two_workers_reads_every_sample_once(real_frames: np.ndarray, tmp_path: Path) -> None:
    out = tmp_path / "set"
    with ShardWriter(str(out), max_count=2) as writer:
        for k in range(14):
            writer.write(_tiny_sample(f"r{k:02d}", real_frames, 1 + k % 4, f"p{k}"), "train")
    write_index(str(out))
    assert len(complete_shards(str(out))) == 7
    keys = _read_keys(out, 0, 2, 2) + _read_keys(out, 1, 2, 2)
    assert sorted(keys) == [f"r{k:02d}" for k in range(14)]


def test_reader_takes_a_window_of_data_frames_with_its_own_audio_and_boxes(real_frames: np.ndarray,
                                                                          tmp_path: Path) -> None:  # fmt: skip
    """`data.frames` shorter than the samples: each sample gives a window of that many frames,
    drawn anywhere in training and at frame 0 for validation, with the audio and boxes of the
    same frames; a sample shorter than the window is refused with the reason."""
    from shards.reader import DecodeSample

    sample = _tiny_sample("w00", real_frames, 2, "p0")
    t = len(real_frames)
    sample.audio = [np.repeat(np.arange(t, dtype=np.float32) / 100, 16000 // 25)] * 2  # each frame's index, as audio
    sample.boxes[:, :, 0] = np.arange(t, dtype=np.float32)  # and in the boxes' left edges
    raw = {"__key__": "w00", **to_members(sample)}
    full = DecodeSample(ReaderConfig(height=64, width=64, latent_grid=(4, 4)))(raw)
    starts = set()
    for seed in range(12):
        got = DecodeSample(ReaderConfig(height=64, width=64, latent_grid=(4, 4), frames=5, random_window=True,
                                        seed=seed))(raw)  # fmt: skip
        start = int(got["boxes"][0, 0, 0])
        starts.add(start)
        assert got["video"].shape[0] == 5 and got["boxes"].shape == (2, 5, 4)
        assert torch.equal(got["video"], full["video"][start : start + 5])
        assert got["boxes"][0, :, 0].tolist() == list(range(start, start + 5))
        assert got["audio"].shape == (2, 5 * 16000 // 25)
        frame_of_audio = np.round(got["audio"][0, :: 16000 // 25].numpy() * 100).astype(int)
        assert frame_of_audio.tolist() == list(range(start, start + 5))
    assert len(starts) > 2 and starts <= set(range(t - 4))
    first = DecodeSample(ReaderConfig(height=64, width=64, latent_grid=(4, 4), frames=5))(raw)
    assert first["boxes"][0, :, 0].tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(SchemaError, match=f"{t} frames, fewer than the {t + 4}"):
        DecodeSample(ReaderConfig(height=64, width=64, latent_grid=(4, 4), frames=t + 4))(raw)


def test_training_refuses_shards_shorter_than_its_window(tmp_path: Path) -> None:
    """`anytalker train` with data.frames longer than the set's samples: a clear error, exit 2."""
    import subprocess
    import sys

    out = tmp_path / "set"
    with ShardWriter(str(out)) as writer:
        writer.write(_tiny_sample("s00", np.zeros((9, 64, 64, 3), np.uint8), 1, "p0"), "train")
    write_index(str(out), {"compose": {"frames": 9, "fps": 24.0}})
    config = tmp_path / "run.yaml"
    config.write_text((Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml").read_text()
                      .replace("frames: 9", "frames: 17"))  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "anytalker", "train", "--shards", str(out), "--config", str(config),
                           "--out", str(tmp_path / "run")], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "samples are 9 frames but data.frames is 17" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_build_shards_flow_on_real_footage(shared_curated: Path, tmp_path: Path) -> None:
    from flows.build_shards import build_shards
    from tasks.catalog import Catalog

    out = tmp_path / "shards"
    config = tmp_path / "c.yaml"
    config.write_text("compose:\n  max_uses: 2\nshards:\n  max_samples: 6\n")
    result = build_shards(str(shared_curated), str(out), None, 3, str(config))
    index = read_index(str(out))
    assert result["failed"] == {}
    train, val = index["splits"]["train"], index["splits"]["val"]
    assert not set(train["identities"]) & set(val["identities"]), "no identity on both sides"
    assert train["kinds"]["composite"] > 0 and train["kinds"]["single"] > 0
    on_disk = sorted(p.name for p in out.glob("*.tar"))
    assert on_disk == sorted(s["shard"] for side in index["splits"].values() for s in side["shards"])
    assert sum(len(_tar_keys(out / name)) for name in on_disk) == train["samples"] + val["samples"]
    assert (shared_curated / "reports" / "shards-preview.png").read_bytes()[:4] == b"\x89PNG"

    with Catalog(shared_curated) as catalog:  # the four-way news clip took the stage-2 path
        stage2 = {r["clip_id"]: r for r in catalog.stage2_rows().values()}
        names = {i.clip: Path(i.source).stem for i in catalog.items() if i.clip}
    news = [r for cid, r in stage2.items() if names[cid] == "avobjects__demo"]
    assert len(news) == 1
    print("four-way news clip, stage 2:", news[0]["verdict"], news[0]["reason"], news[0]["detail"], news[0]["metrics"])
    if news[0]["verdict"] == "rejected":
        assert news[0]["reason"] in ("speakers_untied", "too_many_faces", "unstable_faces") and news[0]["detail"]
    else:
        assert index["splits"]["train"]["kinds"].get("multi", 0) + val["kinds"].get("multi", 0) > 0

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")}
    again = build_shards(str(shared_curated), str(out), None, 3, str(config))
    assert again["written"] == 0 and again["skipped"] == train["samples"] + val["samples"]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.tar")} == mtimes
    assert again["set_id"] == result["set_id"] == index["set_id"]
    # one `shards.published` (the train trigger) for the first build, none for the rerun
    (event,) = published_events("anytalker.shards.published", "shards", str(out))
    assert event.payload["set_id"] == index["set_id"] and event.payload["written"] == result["written"] > 0
    assert event.payload["samples"] == {"train": train["samples"], "val": val["samples"]}


def test_a_sample_that_fails_to_render_is_reported_and_the_rest_are_written(
    shared_curated: Path, tmp_path: Path, monkeypatch
) -> None:
    """One bad sample must not stop the set: its key and error go to the index's `failed`."""
    import flows.build_shards as build

    render, calls = build.render_sample, []

    def second_fails(planned, *args, **kwargs):
        calls.append(planned.key)
        if len(calls) == 2:
            raise ValueError("cannot render this one")
        return render(planned, *args, **kwargs)

    monkeypatch.setattr(build, "render_sample", second_fails)
    config = tmp_path / "c.yaml"
    config.write_text("compose:\n  max_uses: 2\nshards:\n  max_samples: 6\n")
    result = build.build_shards(str(shared_curated), str(tmp_path / "out"), None, 3, str(config))
    assert result["failed"] == {calls[1]: "ValueError: cannot render this one"}
    assert result["index"]["failed"] == result["failed"]
    assert result["written"] == sum(result["index"]["planned"].values()) - 1 > 0


def _stage2_of(clip_path: Path):
    """A 6 s 832x480 two-face clip at 25 fps as a stage-2 candidate (its speech analysed as
    curation would), and its stage-2 result."""
    from tasks.curation.analysis.speech import speech_worker
    from tasks.dataset.clip_library import LibraryClip
    from tasks.dataset.stage2.ties import analyze_multiperson

    config = CurateConfig.model_validate({"multiperson": {"min_face_ratio": 0.5}})
    speech = speech_worker(config.speech).analyze(clip_path)
    clip = LibraryClip(clip_path.stem, clip_path.stem, str(clip_path), 25.0, 150, 832, 480, {}, "rejected", "multi_face",
                       np.zeros((150, 4)), None, speech.speech_regions, speech.words, speech.turns)  # fmt: skip
    return clip, analyze_multiperson(clip, config)


@pytest.mark.slow
def test_stage2_ties_each_voice_to_its_face(shared_curated: Path, tmp_path: Path) -> None:
    """A real two-person clip with known turns: two real talking clips side by side, their
    voices mixed into one track. Stage 2 must find both faces and tie each voice to the face
    that spoke it."""
    from shards.codec import encode_video, encode_wav
    from tasks.dataset.compose import CompositePlan, Turn
    from tasks.dataset.stage2.render import voice_tracks

    clips, names = _clips_by_name(shared_curated)
    by_name = {names[c.clip_id]: c for c in clips}
    man, woman = by_name["PC-AVS__Input_00098"], by_name["video-retalking__face_4"]
    turns = (Turn(0, 71, (0,)), Turn(71, 150, (1,)))
    plan = CompositePlan("control", (man.clip_id, woman.clip_id), turns, (0, 0))
    sample = render_composite(plan, {c.clip_id: c for c in clips}, ComposeConfig(frames=150, fps=25))
    (tmp_path / "v.mp4").write_bytes(encode_video(sample.video, 25))
    (tmp_path / "a.wav").write_bytes(encode_wav(sample.audio[0] + sample.audio[1], 16000))
    clip_path = tmp_path / "two.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(tmp_path / "v.mp4"), "-i", str(tmp_path / "a.wav"),
                    "-c:v", "copy", "-c:a", "aac", str(clip_path)], check=True)  # fmt: skip

    clip, result = _stage2_of(clip_path)
    print("stage-2 control:", result.metrics)
    assert result.rejected is None, result.detail
    assert result.metrics["tie_method"] == "mouth_motion+light_asd"  # Light-ASD judges both faces speaking alike
    assert result.boxes.shape[0] == 2 and None not in result.voice_of_face
    left, right = (result.frame_voice == v for v in result.voice_of_face)
    assert left[:71].mean() > 0.8 and right[71:].mean() > 0.8, "each voice follows the face that spoke"
    from tasks.curation.clipmedia import read_audio

    tracks = voice_tracks(read_audio(clip_path), result.frame_voice, result.voice_of_face, 25.0)
    assert np.abs(tracks[0][int(3.5 * 16000) :]).max() == 0 and np.abs(tracks[1][: int(2.0 * 16000)]).max() == 0

    from tasks.dataset.stage2.render import render_multi  # the stage-2 sample of its first 81 frames

    clip.identity = "id-two"
    sample = render_multi(result, clip, 0, CurateConfig(), "mtwo")
    assert sample.video.shape == (81, 480, 832, 3) and sample.boxes.shape == (2, 81, 4) and sample.stage == 2
    assert sample.fps == 24 and len(sample.audio[0]) == 81 * 16000 // 24
    left_speaks = sample.meta["speaking"][0]
    assert left_speaks and left_speaks[0][0] < 0.5 and sample.meta["speaking"][1][0][0] > 2.0
    hop = 640  # the audio keeps its timeline: source frame t (25 fps) is samples [640 t, 640 (t + 1))
    for t in np.flatnonzero(result.frame_voice[:84] != result.voice_of_face[0]):
        assert not sample.audio[0][t * hop : (t + 1) * hop].any()
    # each 24-fps frame is the 25-fps frame nearest its time: frame 80 (3.333 s) is source frame 83
    np.testing.assert_allclose(sample.boxes[:, 80], result.boxes[:, 83] * 1.0, rtol=1e-5)


def test_stage2_gives_the_voice_to_the_talker_not_the_listener(shared_videos: Path, shared_models: Path,
                                                               tmp_path: Path) -> None:  # fmt: skip
    """Two real faces side by side, one voice: LivePortrait d3 (moves, never talks) left and
    face_4 (talking) right with its own audio. Light-ASD ties the voice to the talker; the
    listener gets no voice, hence a silent track."""
    from tasks.curation.clipmedia import read_audio
    from tasks.dataset.stage2.render import voice_tracks

    clip_path = tmp_path / "listener-talker.mp4"
    cell = "scale=416:480,setsar=1,fps=25,trim=0:6,setpts=PTS-STARTPTS"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(shared_videos / "LivePortrait__d3.mp4"),
                    "-i", str(shared_videos / "video-retalking__face_4.mp4"), "-filter_complex",
                    f"[0:v]{cell}[l];[1:v]{cell}[r];[l][r]hstack[v];[1:a]atrim=0:6,aresample=16000[a]",
                    "-map", "[v]", "-map", "[a]", "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", "-ac", "1",
                    str(clip_path)], check=True)  # fmt: skip
    _, result = _stage2_of(clip_path)
    print("listener and talker:", result.metrics)
    assert result.rejected is None, result.detail
    assert result.metrics["tie_method"] == "light_asd" and result.voice_of_face[0] is None
    assert result.voice_of_face[1] is not None
    listener, talker = voice_tracks(read_audio(clip_path), result.frame_voice, result.voice_of_face, 25.0)
    assert not listener.any() and np.abs(talker).max() > 0.05


def test_identity_split_is_stable_and_two_sided() -> None:
    people = {f"id-{i:04d}" for i in range(200)}
    sides = split_identities(people, 0.1, seed=0)
    assert sides == split_identities(people, 0.1, seed=0)
    assert 8 <= sum(v == "val" for v in sides.values()) <= 35
    more = split_identities(people | {"id-new"}, 0.1, seed=0)
    assert all(more[p] == sides[p] for p in people), "a new person never moves an old one across"
    two = split_identities({"a", "b"}, 0.1, seed=0)
    assert sorted(two.values()) == ["train", "val"]


def _ray_read_loop(config: dict) -> None:
    """A Ray Train worker reads its part of the set and writes the keys it got."""
    import ray.train
    import torch.utils.data

    rank = ray.train.get_context().get_world_rank()
    reader = ReaderConfig(height=64, width=96, latent_grid=(8, 12), face_size=32, shuffle_buffer=2)
    loader = torch.utils.data.DataLoader(make_dataset(config["urls"], reader), batch_size=1, collate_fn=collate)
    keys = [k for batch in loader for k in batch["key"]]
    Path(config["out"], f"keys-{rank}.json").write_text(json.dumps(keys))


@pytest.mark.slow
def test_reader_inside_ray_train_workers(real_frames: np.ndarray, tmp_path: Path) -> None:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    out = tmp_path / "set"
    with ShardWriter(str(out), max_count=2) as writer:
        for k in range(8):
            writer.write(_tiny_sample(f"y{k:02d}", real_frames, 1 + k % 2, f"p{k}"), "train")
    write_index(str(out))
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # every Ray listener on loopback
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local cluster: no token in ~/.ray
    import tempfile

    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay under 108 bytes
    ray.init(num_cpus=2, object_store_memory=200 * 1024**2, include_dashboard=False, _temp_dir=temp,
             runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).parent)}})  # the loop lives here  # fmt: skip
    try:
        TorchTrainer(
            _ray_read_loop,
            train_loop_config={"urls": shard_urls(str(out), "train"), "out": str(tmp_path)},
            scaling_config=ScalingConfig(num_workers=2, use_gpu=False),
            run_config=RunConfig(storage_path=str(tmp_path / "ray-results"), name="reader"),
        ).fit()
    finally:
        ray.shutdown()
    per_rank = [json.loads((tmp_path / f"keys-{r}.json").read_text()) for r in (0, 1)]
    assert all(per_rank), "both workers got shards"
    assert sorted(per_rank[0] + per_rank[1]) == [f"y{k:02d}" for k in range(8)]
