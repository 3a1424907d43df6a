"""Probe a source: streams, duration, frame rate (variable or not), rotation, size.

ffprobe reads the container (it is the reference for what ffmpeg will later cut); PyAV then
demuxes the video packets without decoding them, which gives the true presentation times of
every frame. Those times are what makes variable-frame-rate sources and streams that start
late (common in broadcast captures) cut at the right place.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import av
import numpy as np

from tasks.config import IngestConfig
from tasks.records import Probe, Reason, Rejected


def _ffprobe(path: Path) -> dict:
    cmd = ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        message = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"ffprobe exit {proc.returncode}"
        if "moov atom not found" in proc.stderr and _starts_like_mp4(path):
            raise Rejected(Reason.TRUNCATED, f"incomplete mp4 (moov atom not found): {message}")
        raise Rejected(Reason.UNREADABLE, message)
    return json.loads(proc.stdout)


def _starts_like_mp4(path: Path) -> bool:
    """An ISO-BMFF file opens with a box such as ftyp; a text file named .mp4 does not."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    return len(head) == 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")


def _rotation(stream: dict) -> int:
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            return int(round(float(side["rotation"]))) % 360
    tag = (stream.get("tags") or {}).get("rotate")
    return int(tag) % 360 if tag else 0


def _rate(text: str | None) -> float:
    if not text or text in ("0/0", "0"):
        return 0.0
    num, _, den = text.partition("/")
    return float(num) / float(den or 1)


def frame_times(path: Path) -> tuple[np.ndarray, int]:
    """Presentation times (seconds) of every shown video frame, sorted, from packets alone, and
    how many packets an edit list hides.

    A section cut by stream copy (yt-dlp's download ranges) starts at the keyframe before the
    cut and hides the frames before it; ffmpeg and OpenCV show only the frames from the cut on.
    """
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        base = float(stream.time_base)
        packets = [(p.pts, p.is_discard) for p in container.demux(stream) if p.pts is not None and p.size > 0]
    shown = [pts for pts, hidden in packets if not hidden]
    return np.sort(np.asarray(shown, dtype=np.float64) * base), len(packets) - len(shown)


def is_variable_rate(times: np.ndarray, tolerance: float = 0.25) -> bool:
    """True when frame intervals differ from their median by more than `tolerance` of it."""
    if times.size < 3:
        return False
    gaps = np.diff(times)
    median = float(np.median(gaps))
    if median <= 0:
        return True
    return bool(np.any(np.abs(gaps - median) > tolerance * median))


def probe(path: str | Path, config: IngestConfig) -> tuple[Probe, np.ndarray]:
    """Probe one file. Returns its facts and its frame times, or raises `Rejected`."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise Rejected(Reason.EMPTY_FILE, "zero bytes")
    if size > config.max_file_bytes:
        raise Rejected(Reason.ABSURD_SIZE, f"{size} bytes > {config.max_file_bytes}")
    info = _ffprobe(path)
    streams = info.get("streams", [])
    videos = [s for s in streams if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    if not videos:
        kinds = sorted({s.get("codec_type", "?") for s in streams}) or ["none"]
        raise Rejected(Reason.NO_VIDEO_STREAM, f"streams: {', '.join(kinds)}")
    video = videos[0]
    rotation = _rotation(video)
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if rotation in (90, 270):
        width, height = height, width
    try:
        times, hidden = frame_times(path)
    except (av.FFmpegError, IndexError) as exc:
        raise Rejected(Reason.UNREADABLE, f"cannot demux video packets: {exc}") from exc
    if times.size == 0:
        raise Rejected(Reason.ZERO_LENGTH, "no video frames")
    indexed = int(video.get("nb_frames") or 0)
    if indexed and times.size + hidden < 0.9 * indexed:
        raise Rejected(Reason.TRUNCATED, f"{times.size} of {indexed} indexed frames are in the file")
    fmt = info.get("format", {})
    duration = float(fmt.get("duration") or video.get("duration") or 0.0)
    avg_rate = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate"))
    if times.size > 1:
        span = float(times[-1] - times[0])
        avg_rate = (times.size - 1) / span if span > 0 else avg_rate
    if duration <= 0 or times.size < 2:
        raise Rejected(Reason.ZERO_LENGTH, f"duration {duration:.3f} s, {times.size} frame(s)")
    if duration > config.max_duration_s:
        raise Rejected(Reason.ABSURD_SIZE, f"duration {duration:.0f} s > {config.max_duration_s:.0f} s")
    if min(width, height) < config.min_side_px or max(width, height) > config.max_side_px:
        raise Rejected(Reason.ABSURD_SIZE, f"frame {width}x{height} outside {config.min_side_px}..{config.max_side_px} px")
    audio = audios[0] if audios else None
    result = Probe(
        duration_s=duration,
        width=width,
        height=height,
        rotation=rotation,
        fps=round(avg_rate, 4),
        vfr=is_variable_rate(times),
        n_frames=int(times.size),
        video_codec=str(video.get("codec_name")),
        video_start_s=float(times[0]),
        has_audio=audio is not None,
        audio_codec=audio.get("codec_name") if audio else None,
        audio_rate=int(audio["sample_rate"]) if audio and audio.get("sample_rate") else None,
        audio_channels=int(audio["channels"]) if audio and audio.get("channels") else None,
        format_name=str(fmt.get("format_name")),
    )
    if config.require_audio and not result.has_audio:
        raise Rejected(Reason.NO_AUDIO, "no audio stream and ingest.require_audio is true", result.as_dict())
    return result, times
