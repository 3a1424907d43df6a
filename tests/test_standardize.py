import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import ffmpeg, make_video

from tasks.config import IngestConfig, SplitConfig, StandardizeConfig
from tasks.curation.probe import probe
from tasks.curation.split import plan_clips
from tasks.curation.standardize import inspect_clip, standardize
from tasks.records import ClipPlan, Shot, clip_id_for
from tasks.workdir import clip_path


def _pcm(path: Path) -> np.ndarray:
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", "16000", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    return np.frombuffer(out, np.float32)


def _plan(start: float, end: float) -> ClipPlan:
    return ClipPlan(clip_id_for("x", start, end, 25), 0, 0, start, end)


def test_vfr_source_becomes_constant_frame_rate(shared_videos: Path, tmp_path: Path) -> None:
    src = shared_videos / "PySceneDetect__goldeneye-vfr-drop3.mp4"
    facts, _ = probe(src, IngestConfig(require_audio=False))
    assert facts.vfr
    plans = [_plan(0.0, 3.72), _plan(3.75375, 8.79375)]
    results = standardize(src, "goldeneye", facts, plans, tmp_path, StandardizeConfig())
    for result in results:
        assert result.rejected is None, result.detail
        out, _ = probe(result.path, IngestConfig())
        assert not out.vfr and out.fps == pytest.approx(25.0, abs=0.01)
        assert out.n_frames == round(result.plan.length_s * 25)
        assert (out.audio_rate, out.audio_channels) == (16000, 1)  # a silent track: every clip has audio
        assert np.abs(_pcm(Path(result.path))).max() < 1e-3
    assert not list(tmp_path.rglob("*.part"))


def test_rotation_is_applied(tmp_path: Path) -> None:
    plain = make_video(tmp_path / "plain.mp4", 4.0, size="320x240")
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))
    facts, _ = probe(rotated, IngestConfig())
    (result,) = standardize(rotated, "rot", facts, [_plan(0.0, 3.2)], tmp_path, StandardizeConfig())
    out = inspect_clip(Path(result.path))
    assert (out["width"], out["height"]) == (240, 320)
    assert probe(result.path, IngestConfig())[0].rotation == 0


def test_delayed_audio_stays_in_sync(tmp_path: Path) -> None:
    """Audio that starts 0.6 s after the video keeps its gap (the classic extraction pitfall)."""
    video = make_video(tmp_path / "v.mp4", 5.0, audio=False)
    tone = tmp_path / "tone.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:r=16000:d=4.4", "-c:a", "aac", str(tone))
    delayed = tmp_path / "delayed.mp4"
    ffmpeg("-i", str(video), "-itsoffset", "0.6", "-i", str(tone), "-map", "0:v", "-map", "1:a", "-c", "copy", str(delayed))
    facts, _ = probe(delayed, IngestConfig())
    (result,) = standardize(delayed, "d", facts, [_plan(0.0, 4.0)], tmp_path, StandardizeConfig())
    pcm = np.abs(_pcm(Path(result.path)))
    loud = np.flatnonzero(pcm > 0.1)
    assert loud[0] / 16000 == pytest.approx(0.6, abs=0.04)
    assert len(pcm) / 16000 == pytest.approx(4.0, abs=0.07)


def test_sync_offset_is_applied_by_the_cut(tmp_path: Path) -> None:
    """A plan's `audio_shift_frames` moves its audio inside the one encode: earlier for a positive
    shift (silence at the end), later for a negative one (silence at the start); same length."""
    video = make_video(tmp_path / "v.mp4", 5.0, audio=False)
    tone = tmp_path / "tone.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=f=440:r=16000:d=3.0", "-c:a", "aac", str(tone))
    source = tmp_path / "late.mp4"  # the tone from 0.6 s to 3.6 s
    ffmpeg("-i", str(video), "-itsoffset", "0.6", "-i", str(tone), "-map", "0:v", "-map", "1:a", "-c", "copy", str(source))
    facts, _ = probe(source, IngestConfig())
    plans = [ClipPlan(f"shift{k}", 0, 0, 0.0, 4.0, audio_shift_frames=k) for k in (0, 5, -5)]
    onsets, ends, lengths = [], [], []
    for result in standardize(source, "late", facts, plans, tmp_path, StandardizeConfig()):
        loud = np.flatnonzero(np.abs(_pcm(Path(result.path))) > 0.1) / 16000
        onsets.append(loud[0])
        ends.append(loud[-1])
        lengths.append(len(_pcm(Path(result.path))) / 16000)
    assert onsets == pytest.approx([0.6, 0.4, 0.8], abs=0.03)  # 5 frames at 25 fps: 0.2 s
    assert ends == pytest.approx([3.6, 3.4, 3.8], abs=0.03)
    assert lengths == pytest.approx([4.0] * 3, abs=0.07)


def test_clips_are_cut_in_groups_and_reused_on_rerun(tmp_path: Path) -> None:
    src = make_video(tmp_path / "long.mp4", 20.0)
    facts, _ = probe(src, IngestConfig())
    plans = plan_clips("long", [Shot(0, 0.0, 20.0)], SplitConfig(), 25)
    config = StandardizeConfig(clips_per_pass=1, max_height=120)
    first = standardize(src, "long", facts, plans, tmp_path, config)
    assert [r.n_frames for r in first] == [250, 250]
    assert all(inspect_clip(Path(r.path))["height"] == 120 for r in first)
    stamp = [Path(r.path).stat().st_mtime_ns for r in first]
    again = standardize(src, "long", facts, plans, tmp_path, config)
    assert [Path(r.path).stat().st_mtime_ns for r in again] == stamp
    assert Path(first[0].path) == clip_path(tmp_path, "long", plans[0].clip_id)


def test_analysis_frames_come_from_the_source_as_the_standard_clip_holds_them(shared_videos: Path, tmp_path: Path) -> None:
    """`decode_plans` (analysis without an encode) gives the frames and audio of the standard
    clip the same plans write: same count, same size, same picture up to x264's loss, same sound;
    on a variable-frame-rate source with two clips cut in one pass, and a rotated one."""
    from tasks.curation.clipmedia import read_clip
    from tasks.curation.standardize import decode_plans

    src = shared_videos / "PC-AVS__Input_00098.mp4"
    plain = tmp_path / "plain.mp4"  # the talking clip at a variable frame rate (every 7th frame dropped)
    ffmpeg("-i", str(src), "-vf", "select='not(eq(mod(n\\,7)\\,3))'", "-fps_mode", "vfr", "-c:v", "libx264",
           "-preset", "ultrafast", "-c:a", "aac", str(plain))  # fmt: skip
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))
    for source, plans in ((plain, [_plan(0.0, 3.0), _plan(3.2, 7.0)]), (rotated, [_plan(1.0, 4.0)])):
        facts, _ = probe(source, IngestConfig())
        config = StandardizeConfig()
        media = list(decode_plans(source, facts, plans, config, max_side=320))
        written = standardize(source, source.stem, facts, plans, tmp_path, config)
        for got, result in zip(media, written, strict=True):
            clip = read_clip(result.path, max_side=320)
            assert got.frames.shape == clip.frames.shape and (got.width, got.height) == (clip.width, clip.height)
            assert got.scale == pytest.approx(clip.scale)
            assert len(got.audio) == pytest.approx(len(clip.audio), abs=1024)  # AAC frames, 64 ms
            difference = np.abs(got.frames.astype(np.float32) - clip.frames).mean()
            assert difference < 4.0, (source.name, difference)  # measured: 1.6 grey levels
            n = min(len(got.audio), len(clip.audio))
            assert np.corrcoef(got.audio[:n], clip.audio[:n])[0, 1] > 0.95
    assert not list(Path(tempfile.gettempdir()).glob("anytalker-decode-*"))
