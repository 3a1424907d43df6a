"""Shared fixtures: the ../shared data (skipped with a message where absent), media made with
ffmpeg and espeak-ng, and one Prefect test server for the whole session."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from anytalker import prefect_env

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ANYTALKER_SHARED", ROOT.parent / "shared")).resolve()
SHARED_VIDEOS = SHARED / "data" / "videos"
SHARED_MODELS = SHARED / "models"

prefect_env.configure()


def _use_shared_models() -> None:
    """Point the face stages at ../shared/models (CI has it): a folder of links to the SCRFD
    detector and MobileFaceNet, as insightface expects one pack per folder."""
    if not (SHARED_MODELS / "mobilefacenet.onnx").exists():
        return
    pack = Path(tempfile.mkdtemp(prefix="anytalker-face-pack-"))
    for name in ("scrfd_2.5g_bnkps.onnx", "mobilefacenet.onnx"):
        (pack / name).symlink_to(SHARED_MODELS / name)
    os.environ.setdefault("ANYTALKER_FACE_MODELS", str(pack))
    os.environ.setdefault("ANYTALKER_FACE_LANDMARKER", str(SHARED_MODELS / "face_landmarker.task"))


_use_shared_models()


@pytest.fixture(scope="session")
def shared_models() -> Path:
    if not (SHARED_MODELS / "mobilefacenet.onnx").exists():
        pytest.skip(f"../shared/models is not here ({SHARED_MODELS}); CI has it, a user's machine may not")
    return SHARED_MODELS


@pytest.fixture(scope="session")
def shared_videos() -> Path:
    if not SHARED_VIDEOS.is_dir():
        pytest.skip(f"../shared/data is not here ({SHARED_VIDEOS}); CI has it, a user's machine may not")
    return SHARED_VIDEOS


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One temporary Prefect server (SQLite in a temp PREFECT_HOME) for every flow test."""
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ["PREFECT_HOME"] = str(home)
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


SHARED_CURATED = [
    "PC-AVS__Audio_Source_00015", "PC-AVS__Audio_Source_00373", "PC-AVS__Input_00002", "PC-AVS__Input_00098",
    "PC-AVS__Pose_Source_00473", "PC-AVS__Pose_Source_517600055", "PC-AVS__Pose_Source_731200067",
    "video-retalking__face_2", "video-retalking__face_4", "LivePortrait__d11",
    "LivePortrait__d14", "LivePortrait__d3", "avobjects__demo",
]  # fmt: skip


@pytest.fixture(scope="session")
def shared_curated(prefect_server, shared_videos: Path, shared_models: Path, tmp_path_factory) -> Path:
    """One curate run over ../shared/data's talking, silent and multi-person videos, shared by the
    analysis and shard tests (the work directory; read-only for its users)."""
    from flows.curate import curate

    work = tmp_path_factory.mktemp("shared-curated") / "work"
    curate([str(shared_videos / f"{n}.mp4") for n in SHARED_CURATED], str(work), None)
    return work


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def make_video(
    path: Path,
    seconds: float,
    *,
    audio: bool = True,
    size: str = "320x240",
    rate: int = 25,
    colour: str | None = None,
) -> Path:
    """A real H.264 mp4 from ffmpeg's test sources (a moving pattern, or a flat colour; a tone)."""
    source = f"color=c={colour}:s={size}:r={rate}" if colour else f"testsrc2=s={size}:r={rate}"
    args = ["-f", "lavfi", "-i", f"{source}:d={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=f=440:r=44100:d={seconds}", "-c:a", "aac"]
    ffmpeg(*args, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-shortest", str(path))
    return path


def make_cut_video(path: Path, shots: list[tuple[str, float]], *, audio: bool = True) -> Path:
    """Shots of flat colours that differ in brightness and hue, concatenated with hard cuts."""
    inputs: list[str] = []
    for colour, seconds in shots:
        inputs += ["-f", "lavfi", "-i", f"color=c={colour}:s=320x240:r=25:d={seconds}"]
    n = len(shots)
    graph = "".join(f"[{i}:v]" for i in range(n)) + f"concat=n={n}:v=1:a=0[v]"
    args = [*inputs]
    if audio:
        total = sum(s for _, s in shots)
        args += ["-f", "lavfi", "-i", f"sine=f=300:r=16000:d={total}"]
    args += ["-filter_complex", graph, "-map", "[v]"]
    if audio:
        args += ["-map", f"{n}:a", "-c:a", "aac"]
    ffmpeg(*args, "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path))
    return path


def published_events(name: str, payload_key: str, value: str, settle_s: float = 30.0) -> list:
    """Events called `name` whose payload[payload_key] is `value`, as the Prefect server stored
    them. Waits until at least one is there (events travel asynchronously), then `settle_s`/6
    more so that a second one emitted by mistake would be seen too."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()

    def matching() -> list:
        with get_client(sync_client=True) as client:
            page = client.read_events(filter=EventFilter(event=EventNameFilter(name=[name])), limit=50)
        return [e for e in page.events if e.payload.get(payload_key) == value]

    deadline = time.monotonic() + settle_s
    while not matching() and time.monotonic() < deadline:
        time.sleep(1)
    time.sleep(settle_s / 6)
    return matching()
