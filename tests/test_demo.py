"""The synthetic demo set: labelled as synthetic, mouths that move with the speech, and the
`anytalker demo` command end to end."""

import json
import subprocess
from collections import Counter
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from anytalker.demo_media import FACES, _portrait, make_demo_media


@pytest.fixture(scope="module")
def demo_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_media(tmp_path_factory.mktemp("demo") / "media")


def _frames_and_audio(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with av.open(str(path)) as c:
        frames = np.stack([f.to_ndarray(format="gray") for f in c.decode(video=0)])
    pcm = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", "16000", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    return frames, np.frombuffer(pcm, np.float32)


def test_every_file_is_labelled_synthetic(demo_media: Path) -> None:
    names = sorted(p.name for p in demo_media.iterdir())
    assert len(names) == 8 and all(n.startswith("synthetic_") for n in names)
    with av.open(str(demo_media / "synthetic_talker_a.mp4")) as c:
        assert "synthetic" in c.metadata.get("comment", "")


def test_mouth_opens_with_the_speech(demo_media: Path) -> None:
    frames, audio = _frames_and_audio(demo_media / "synthetic_talker_a.mp4")
    _, centre, width = _portrait(FACES["a"])
    x, y, r = int(centre[0]), int(centre[1]), int(0.4 * width)
    darkness = 255.0 - frames[:, y : y + r, x - r : x + r].mean(axis=(1, 2))
    hop = 16000 // 25
    rms = np.array([np.sqrt(np.mean(audio[i * hop : (i + 1) * hop] ** 2)) for i in range(len(frames))])
    corr = np.corrcoef(darkness, rms)[0, 1]
    assert corr > 0.6, corr
    silent, silent_audio = _frames_and_audio(demo_media / "synthetic_silent.mp4")
    assert np.abs(silent_audio).max() < 1e-3
    assert silent[:, y : y + r, x - r : x + r].mean(axis=(1, 2)).std() < 3  # the mouth stays shut


@pytest.mark.slow
def test_demo_command_runs_everything(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "anytalker", "demo", "--workdir", str(tmp_path)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = subprocess.run(
        [sys.executable, "-m", "anytalker", "report", str(tmp_path / "curated"), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    items = json.loads(report.stdout)["items"]
    by_name: dict[str, list[dict]] = {}
    for item in items:
        by_name.setdefault(Path(item["source"]).name, []).append(item)
    assert [i["reason"] for i in by_name["synthetic_not_a_video.mp4"]] == ["unreadable"]
    assert [i["reason"] for i in by_name["synthetic_silent.mp4"]] == ["no_speech"]
    assert [i["reason"] for i in by_name["synthetic_two_faces.mp4"]] == ["multi_face"]
    assert [i["verdict"] for i in by_name["synthetic_hard_cut.mp4"]] == ["accepted", "accepted"]
    for key in "abcd":
        assert [i["verdict"] for i in by_name[f"synthetic_talker_{key}.mp4"]] == ["accepted"]
    # and the shard set built from the accepted clips, with its preview
    shards = subprocess.run(
        [sys.executable, "-m", "anytalker", "shards", "inspect", str(tmp_path / "shards")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "train" in shards.stdout and (tmp_path / "shards" / "preview.png").read_bytes()[:4] == b"\x89PNG"
    index = json.loads((tmp_path / "shards" / "index.json").read_text())
    kinds = Counter()
    for side in index["splits"].values():
        kinds.update(side["kinds"])
    assert kinds["composite"] > 0 and kinds["single"] > 0

