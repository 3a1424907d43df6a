from pathlib import Path

import pytest
from conftest import make_cut_video

from tasks.config import IngestConfig, SplitConfig
from tasks.curation.probe import probe
from tasks.curation.split import detect_cut_frames, plan_clips, shots_from_cuts
from tasks.records import Reason, Shot


def _shots(path: Path, config: SplitConfig, require_audio: bool = True) -> list[Shot]:
    facts, times = probe(path, IngestConfig(require_audio=require_audio))
    return shots_from_cuts(detect_cut_frames(path, config, facts.n_frames), times)


def test_hamilton_splits_near_its_cuts(shared_videos: Path) -> None:
    """The cuts are at about 1.5, 3.6 and 7.9 s of presentation time (the video starts at 0.85 s)."""
    shots = _shots(shared_videos / "face_recognition__short_hamilton_clip.mp4", SplitConfig())
    starts = [s.start_s for s in shots]
    for cut in (1.51, 3.58, 7.88):
        assert min(abs(s - cut) for s in starts) < 0.1, (cut, starts)
    assert shots[0].start_s == pytest.approx(0.852, abs=0.01)
    assert shots[-1].end_s == pytest.approx(10.03, abs=0.05)
    content = _shots(shared_videos / "face_recognition__short_hamilton_clip.mp4", SplitConfig(detector="content"))
    assert [round(s.start_s, 1) for s in content] == [0.9, 1.5, 3.6, 7.9]


def test_vfr_cuts_land_on_presentation_times(shared_videos: Path) -> None:
    shots = _shots(shared_videos / "PySceneDetect__goldeneye-vfr-drop3.mp4", SplitConfig(), require_audio=False)
    starts = [s.start_s for s in shots]
    for cut in (3.75, 8.76):
        assert min(abs(s - cut) for s in starts) < 0.1, (cut, starts)


def test_each_detector_finds_hard_cuts(tmp_path: Path) -> None:
    video = make_cut_video(tmp_path / "cuts.mp4", [("0x202020", 2.0), ("0xE0C040", 2.0), ("0x3050D0", 2.0)])
    for detector in ("adaptive", "content", "histogram"):
        shots = _shots(video, SplitConfig(detector=detector))
        assert [round(s.start_s, 2) for s in shots] == [0.0, 2.0, 4.0], detector


def test_plans_reject_short_shots_and_cut_long_ones_into_equal_pieces() -> None:
    shots = [Shot(0, 0.0, 2.5), Shot(1, 2.5, 12.5), Shot(2, 12.5, 44.5)]
    plans = plan_clips("src", shots, SplitConfig(), fps=25)
    assert [p.rejected for p in plans] == [Reason.TOO_SHORT, None, None, None, None]
    long = [p for p in plans if p.shot_index == 2]
    assert len(long) == 3 and all(p.length_s <= 15.0 for p in long)
    assert long[0].start_s == 12.5 and long[-1].end_s == pytest.approx(44.5, abs=0.04)
    assert max(p.length_s for p in long) - min(p.length_s for p in long) <= 0.04 + 1e-9
    assert all(abs(p.length_s * 25 - round(p.length_s * 25)) < 1e-6 for p in plans if not p.rejected)
    assert len({p.clip_id for p in plans}) == len(plans)
    assert plans == plan_clips("src", shots, SplitConfig(), fps=25)  # ids are stable
    assert plans[1].clip_id != plan_clips("src", shots, SplitConfig(), fps=24)[1].clip_id
