from pathlib import Path

import pytest
from conftest import ffmpeg, make_video

from tasks.config import IngestConfig
from tasks.curation.probe import probe
from tasks.records import Reason, Rejected


def _reason(path: Path, config: IngestConfig | None = None) -> Reason:
    with pytest.raises(Rejected) as err:
        probe(path, config or IngestConfig())
    return err.value.reason


def test_variable_frame_rate_and_late_video_start(shared_videos: Path) -> None:
    vfr, _ = probe(shared_videos / "PySceneDetect__goldeneye-vfr-drop3.mp4", IngestConfig(require_audio=False))
    assert vfr.vfr and not vfr.has_audio and (vfr.width, vfr.height) == (1280, 544)
    ham, times = probe(shared_videos / "face_recognition__short_hamilton_clip.mp4", IngestConfig())
    assert not ham.vfr and ham.has_audio and ham.n_frames == len(times) == 275
    assert ham.video_start_s == pytest.approx(0.852, abs=0.01)  # the video starts after the audio
    assert ham.fps == pytest.approx(29.97, abs=0.01)


def test_rotation_is_read_and_applied_to_the_size(tmp_path: Path) -> None:
    plain = make_video(tmp_path / "plain.mp4", 1.0, size="320x240")
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))
    facts, _ = probe(rotated, IngestConfig())
    assert facts.rotation in (90, 270) and (facts.width, facts.height) == (240, 320)


def test_bad_files_are_rejected_with_their_reason(tmp_path: Path) -> None:
    good = make_video(tmp_path / "good.mp4", 2.0)
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert _reason(tmp_path / "empty.mp4") is Reason.EMPTY_FILE
    (tmp_path / "text.mp4").write_text("not a video at all\n" * 50)
    assert _reason(tmp_path / "text.mp4") is Reason.UNREADABLE
    data = good.read_bytes()  # ffmpeg writes the index (moov) last: cut, it is lost
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    assert _reason(tmp_path / "cut.mp4") is Reason.TRUNCATED
    fast = tmp_path / "fast.mp4"  # index first, media data cut: fewer frames than indexed
    ffmpeg("-i", str(good), "-c", "copy", "-movflags", "+faststart", str(fast))
    data = fast.read_bytes()
    (tmp_path / "cut_fast.mp4").write_bytes(data[: len(data) // 3])
    assert _reason(tmp_path / "cut_fast.mp4") is Reason.TRUNCATED
    ffmpeg("-f", "lavfi", "-i", "sine=d=2", "-c:a", "aac", str(tmp_path / "audio_only.m4a"))
    assert _reason(tmp_path / "audio_only.m4a") is Reason.NO_VIDEO_STREAM
    silent = make_video(tmp_path / "no_audio.mp4", 2.0, audio=False)
    assert _reason(silent) is Reason.NO_AUDIO
    assert probe(silent, IngestConfig(require_audio=False))[0].has_audio is False
    assert _reason(good, IngestConfig(min_side_px=1000)) is Reason.ABSURD_SIZE
    assert _reason(good, IngestConfig(max_duration_s=1.0)) is Reason.ABSURD_SIZE
    assert _reason(good, IngestConfig(max_file_bytes=100)) is Reason.ABSURD_SIZE


def test_rejection_keeps_what_the_probe_learnt(tmp_path: Path) -> None:
    silent = make_video(tmp_path / "no_audio.mp4", 2.0, audio=False)
    with pytest.raises(Rejected) as err:
        probe(silent, IngestConfig())
    assert err.value.facts["n_frames"] == 50 and err.value.facts["has_audio"] is False
