"""AnyTalker's benchmark reference frames, fetched for users with internet: for each (video id
or URL, time) of a list, yt-dlp downloads the video and ffmpeg takes the frame at that time into
DIR/images/<name>.jpg. Offline it refuses with the reason, and never leaves a partial file.

List format, one per line (`#` comments): `VIDEO TIME [NAME]`; VIDEO is a YouTube id or any
URL yt-dlp opens, TIME seconds or HH:MM:SS(.ms), NAME the benchmark item (default: line order,
interact_1, interact_2, ...).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


class FetchError(RuntimeError):
    """A list or a download that cannot be done; the message says which and why."""


@dataclass(frozen=True)
class FrameRequest:
    video: str
    time: float
    name: str


def _seconds(text: str) -> float:
    parts = text.split(":")
    if not 1 <= len(parts) <= 3 or not all(re.fullmatch(r"\d+(\.\d+)?", p) for p in parts):
        raise FetchError(f"time {text!r}: seconds or HH:MM:SS")
    value = 0.0
    for p in parts:
        value = value * 60 + float(p)
    return value


def read_list(path: Path) -> list[FrameRequest]:
    if not path.is_file():
        raise FetchError(f"list not found: {path}")
    requests = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) < 2:
            raise FetchError(f"{path}:{n}: expected `VIDEO TIME [NAME]`, got {line!r}")
        name = fields[2] if len(fields) > 2 else f"interact_{len(requests) + 1}"
        requests.append(FrameRequest(fields[0], _seconds(fields[1]), name))
    return requests


def _url(video: str) -> str:
    return video if "://" in video else f"https://www.youtube.com/watch?v={video}"


def fetch_frame(request: FrameRequest, out_dir: Path) -> Path:
    """Download, cut the frame, rename into place; FetchError with yt-dlp's reason on failure."""
    import yt_dlp

    target = out_dir / "images" / f"{request.name}.jpg"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        options = {"outtmpl": f"{tmp}/video.%(ext)s", "quiet": True, "no_warnings": True, "noprogress": True,
                   "format": "bv*[height<=1080]+ba/b[height<=1080]/b", "socket_timeout": 20, "retries": 1}  # fmt: skip
        try:
            with yt_dlp.YoutubeDL(options) as ydl:
                ydl.download([_url(request.video)])
        except yt_dlp.utils.DownloadError as exc:
            reason = str(exc).removeprefix("ERROR: ")
            offline = any(s in reason for s in ("Name or service not known", "Temporary failure", "Failed to resolve",
                                                "Network is unreachable", "Connection refused", "timed out"))  # fmt: skip
            raise FetchError(f"{request.name}: cannot download {request.video}"
                             f"{' (no internet? this needs one)' if offline else ''}: {reason}") from None  # fmt: skip
        videos = [p for p in Path(tmp).iterdir() if p.name.startswith("video.")]
        if not videos:
            raise FetchError(f"{request.name}: yt-dlp wrote nothing for {request.video}")
        part = Path(tmp) / "frame.jpg"
        proc = subprocess.run(["ffmpeg", "-v", "error", "-y", "-ss", f"{request.time:.3f}", "-i", str(videos[0]),
                               "-frames:v", "1", "-q:v", "2", str(part)], capture_output=True, text=True)  # fmt: skip
        if proc.returncode != 0 or not part.is_file():
            raise FetchError(
                f"{request.name}: no frame at {request.time:g} s in {request.video}: {proc.stderr.strip()}"
            )
        os.replace(part, target)
    return target


def fetch_frames(out_dir: Path, list_path: Path) -> tuple[list[Path], list[str]]:
    """Every frame of the list: (written or already there, failures with reasons)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done, failed = [], []
    for request in read_list(list_path):
        try:
            done.append(fetch_frame(request, out_dir))
        except FetchError as exc:
            failed.append(str(exc))
    return done, failed
