"""Shared fixtures: the ../shared data (skipped with a message where absent), media made with
ffmpeg and espeak-ng, and one Prefect test server for the whole session."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
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
    detector and MobileFaceNet, as insightface expects one pack per folder, and Light-ASD."""
    if not (SHARED_MODELS / "mobilefacenet.onnx").exists():
        return
    pack = Path(tempfile.mkdtemp(prefix="anytalker-face-pack-"))
    for name in ("scrfd_2.5g_bnkps.onnx", "mobilefacenet.onnx"):
        (pack / name).symlink_to(SHARED_MODELS / name)
    os.environ.setdefault("ANYTALKER_FACE_MODELS", str(pack))
    os.environ.setdefault("ANYTALKER_FACE_LANDMARKER", str(SHARED_MODELS / "face_landmarker.task"))
    if (SHARED_MODELS / "lightasd_finetuning_TalkSet.model").is_file():  # who speaks: not_the_speaker, stage 2
        os.environ.setdefault("ANYTALKER_LIGHT_ASD", str(SHARED_MODELS / "lightasd_finetuning_TalkSet.model"))


_use_shared_models()


def _shared_or_skip(path: Path, part: str, found: bool) -> Path:
    if not found:
        pytest.skip(f"../shared/{part} is not here ({path}); CI has it, a user's machine may not")
    return path


@pytest.fixture(scope="session")
def shared_models() -> Path:
    return _shared_or_skip(SHARED_MODELS, "models", (SHARED_MODELS / "mobilefacenet.onnx").exists())


@pytest.fixture(scope="session")
def shared_videos() -> Path:
    return _shared_or_skip(SHARED_VIDEOS, "data", SHARED_VIDEOS.is_dir())


@pytest.fixture(scope="session")
def shared_audio() -> Path:
    audio = SHARED / "data" / "audio"
    return _shared_or_skip(audio, "data", audio.is_dir())


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One temporary Prefect server (SQLite in a temp PREFECT_HOME) for every flow test."""
    home = tmp_path_factory.mktemp("prefect-home")
    os.environ["PREFECT_HOME"] = str(home)
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


def session_prefect_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess that reports to the session's Prefect server (under
    `prefect_server`): a server of its own would cost each such run its start-up."""
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), **extra}


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


def curated_items(work: Path) -> dict[str, list[dict]]:
    """A curate run's catalog items by source file stem, in catalog order (tests read the
    session's shared_curated run through it instead of analysing its clips again)."""
    from tasks.catalog import Catalog

    by_stem: dict[str, list[dict]] = {}
    with Catalog(work) as catalog:
        for item in catalog.report()["items"]:
            by_stem.setdefault(Path(item["source"]).stem, []).append(item)
    return by_stem


@pytest.fixture(scope="session")
def demo_media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's synthetic media (anytalker/demo_media.py): four talkers, a silent clip, two
    faces, a hard cut and a text file named .mp4."""
    from anytalker.demo_media import make_demo_media

    return make_demo_media(tmp_path_factory.mktemp("demo") / "media")


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


class LocalSite:
    """A web server on loopback for scraping tests: serves a folder with byte ranges (as real
    servers do, and as ffmpeg needs to read a section of an mp4), logs every request, and
    answers scripted statuses for chosen paths (e.g. 429 with Retry-After, then the file)."""

    def __init__(self, root: Path) -> None:
        import functools
        import http.server
        import re
        import threading
        import time

        self.root = root
        self.requests: list[dict] = []  # path, method, time, headers
        self.script: dict[str, list[tuple[int, dict]]] = {}  # path -> statuses to answer first
        self.media_delay_s = 0.0  # answer each media request this much later (downloads overlap)
        self.in_flight: dict[str, int] = {}  # media path -> requests being served
        self.bytes_sent = 0  # body bytes written to clients (what a client reads before hanging up)
        self.max_in_flight = 0  # distinct media files served at once, at most (one download may overlap
        # its own requests: yt-dlp's probe of a file is still being answered when the download starts)
        self.on_media: Callable[[str], None] | None = None  # called with the path as each media request comes in
        lock = threading.Lock()
        site = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _scripted(self) -> bool:
                site.requests.append({"path": self.path, "method": self.command, "time": time.monotonic(),
                                      "headers": dict(self.headers)})  # fmt: skip
                queue = site.script.get(self.path.split("?")[0])
                if not queue:
                    return False
                status, headers = queue.pop(0)
                self.send_response(status)
                for key, value in {"Content-Length": "0", **headers}.items():
                    self.send_header(key, value)
                self.end_headers()
                return True

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                media = path.endswith(".mp4")
                if media:
                    if site.on_media is not None:
                        site.on_media(path)
                    with lock:
                        site.in_flight[path] = site.in_flight.get(path, 0) + 1
                        site.max_in_flight = max(site.max_in_flight, sum(n > 0 for n in site.in_flight.values()))
                try:
                    if media:
                        time.sleep(site.media_delay_s)
                    super().do_GET()
                finally:
                    if media:
                        with lock:
                            site.in_flight[path] -= 1

            def send_head(self):  # noqa: ANN202 - http.server's own hook
                if self._scripted():
                    return None
                path = self.translate_path(self.path)
                wanted = re.match(r"bytes=(\d*)-(\d*)$", self.headers.get("Range", ""))
                if not wanted or not Path(path).is_file():
                    return super().send_head()
                size = Path(path).stat().st_size
                a = int(wanted.group(1)) if wanted.group(1) else size - int(wanted.group(2))
                b = min(int(wanted.group(2)), size - 1) if wanted.group(1) and wanted.group(2) else size - 1
                handle = open(path, "rb")  # noqa: SIM115 - http.server closes what send_head returns
                handle.seek(a)
                self.send_response(206)
                self.send_header("Content-Type", self.guess_type(path))
                self.send_header("Content-Range", f"bytes {a}-{b}/{size}")
                self.send_header("Content-Length", str(b - a + 1))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                self._left = b - a + 1
                return handle

            def copyfile(self, source, outputfile) -> None:  # noqa: ANN001
                left = getattr(self, "_left", None)
                left = float("inf") if left is None else left
                while left > 0 and (chunk := source.read(int(min(1 << 16, left)))):
                    outputfile.write(chunk)
                    left -= len(chunk)
                    with lock:
                        site.bytes_sent += len(chunk)

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:  # noqa: ANN001
                pass  # ffmpeg and yt-dlp hang up mid-body once they have what they need

        self._server = Server(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"

    def hits(self, path: str, method: str = "GET") -> list[dict]:
        return [r for r in self.requests if r["path"].split("?")[0] == path and r["method"] == method]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[LocalSite]:
    root = tmp_path / "site"
    root.mkdir()
    server = LocalSite(root)
    yield server
    server.close()
