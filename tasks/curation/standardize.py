"""Cut planned clips out of a source as standard clips: CFR H.264 mp4 with 16 kHz mono audio.

Clips are cut in groups: one ffmpeg process seeks once to a group's span, decodes it once and
feeds every clip of the group through its own trim and encoder. The whole source is never
re-read per clip, and the number of encoders alive at once stays bounded for long sources.

Timestamps are kept as the source has them (`-copyts`) and every trim is on presentation time,
so a video stream that starts late, or an audio stream with a leading gap, stays in sync:
the audio is re-timed against its own timestamps (`aresample=async=1`) before it is cut.

Each clip is written under a temporary name and renamed when ffmpeg and a check of the result
have both succeeded, so a half-written clip is never visible.

`decode_plans` runs the same cut without the encoder, for analysis: the curate flow encodes only
the clips analysis keeps, and a rejected clip's time range stays in the catalog to cut later.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import av
import numpy as np

from tasks.config import StandardizeConfig
from tasks.curation.clipmedia import ClipMedia
from tasks.records import ClipPlan, ClipResult, Probe, Reason
from tasks.workdir import clip_path

SEEK_MARGIN_S = 3.0  # seek this far before a group so the decoder reaches a keyframe in time


def _frames(plan: ClipPlan, fps: float) -> int:
    return max(1, int(round(plan.length_s * fps)))


def _scale(max_height: int) -> str:
    # Even sides (yuv420p needs them), never taller than max_height, square pixels.
    return (
        f"scale='trunc(iw*min(1,{max_height}/ih)/2)*2':'trunc(min(ih,{max_height})/2)*2',setsar=1,format=yuv420p"
    )


def standard_size(probe: Probe, config: StandardizeConfig) -> tuple[int, int]:
    """The standard clip's width and height for this source (what `_scale` makes of it)."""
    ratio = min(1.0, config.max_height / probe.height)
    return int(probe.width * ratio / 2) * 2, int(min(probe.height, config.max_height) / 2) * 2


def analysis_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Frames for analysis: long side at most `max_side`, even sides (as `read_clip` scales)."""
    scale = max(1.0, max(width, height) / max_side)
    return int(round(width / scale)) // 2 * 2, int(round(height / scale)) // 2 * 2


def _cut_graph(probe: Probe, plans: Sequence[ClipPlan], config: StandardizeConfig, seek: float, video_tail: str) -> str:
    """The filter graph that cuts `plans` on presentation time into `[ov{i}]`/`[oa{i}]` pads;
    `video_tail` ends each video chain (the standard scale, or the analysis scale and pixel format)."""
    fps = config.fps
    rate = config.audio_rate
    n = len(plans)
    graph: list[str] = []
    vsplit = "".join(f"[v{i}]" for i in range(n))
    graph.append(f"[0:v:0]split={n}{vsplit}" if n > 1 else "[0:v:0]null[v0]")
    if probe.has_audio:
        asplit = "".join(f"[a{i}]" for i in range(n))
        timing = f"aresample={rate}:async=1:first_pts={int(round(seek * rate))},aformat=sample_fmts=fltp:channel_layouts=mono"
        graph.append(f"[0:a:0]{timing},asplit={n}{asplit}" if n > 1 else f"[0:a:0]{timing}[a0]")
    for i, plan in enumerate(plans):
        frames = _frames(plan, fps)
        samples = int(round(frames / fps * rate))
        s, e = plan.file_start_s, plan.file_end_s
        graph.append(
            f"[v{i}]trim=start={s:.6f}:end={e + 1.0 / fps:.6f},setpts=PTS-{s:.6f}/TB,"
            f"fps={fps:g}:start_time=0,tpad=stop_mode=clone:stop=2,trim=end_frame={frames},"
            f"{video_tail}[ov{i}]"
        )
        if probe.has_audio:
            graph.append(f"[a{i}]atrim=start={s:.6f},asetpts=PTS-STARTPTS,{_shifted(plan, fps, rate, samples)}[oa{i}]")
        else:  # silent track, so every standard clip has the same streams
            graph.append(f"anullsrc=r={rate}:cl=mono,atrim=end_sample={samples}[oa{i}]")
    return ";".join(graph)


def _shifted(plan: ClipPlan, fps: float, rate: int, samples: int) -> str:
    """The audio chain's end: `plan.audio_shift_frames` applied (audio moved earlier by dropping its
    first samples, later by leading silence), then padded with silence and cut to `samples`, so a
    shifted clip keeps its length and its one AAC encode."""
    shift = int(round(plan.audio_shift_frames / fps * rate))
    if shift > 0:  # audio late against the mouth: start it later in the source, end it where the clip ends
        moved = f"atrim=start_sample={shift},asetpts=PTS-STARTPTS,atrim=end_sample={max(0, samples - shift)},"
    elif shift < 0:
        moved = f"adelay=delays={-shift}S:all=1,"
    else:
        moved = ""
    return f"{moved}apad=whole_len={samples},atrim=end_sample={samples}"


def _input(source: Path, seek: float) -> list[str]:
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", "-copyts", "-noaccurate_seek"]
    if seek > 0:
        cmd += ["-ss", f"{seek:.6f}"]
    return cmd + ["-i", str(source)]


def _seek(plans: Sequence[ClipPlan]) -> float:
    return max(0.0, min(p.file_start_s for p in plans) - SEEK_MARGIN_S)


def build_command(
    source: Path, probe: Probe, plans: Sequence[ClipPlan], outputs: Sequence[Path], config: StandardizeConfig
) -> list[str]:
    """The ffmpeg command that cuts `plans` into `outputs` in one pass over their span."""
    seek = _seek(plans)
    cmd = _input(source, seek) + ["-filter_complex", _cut_graph(probe, plans, config, seek, _scale(config.max_height))]
    for i, out in enumerate(outputs):
        cmd += [
            "-map", f"[ov{i}]", "-map", f"[oa{i}]",
            "-c:v", "libx264", "-preset", config.preset, "-crf", str(config.crf),
            "-c:a", "aac", "-b:a", "64k", "-ar", str(config.audio_rate), "-ac", "1",
            "-fps_mode", "passthrough", "-movflags", "+faststart", "-map_metadata", "-1",
            "-f", "mp4", str(out),
        ]  # fmt: skip
    return cmd


def decode_plans(
    source: str | Path, probe: Probe, plans: Sequence[ClipPlan], config: StandardizeConfig, max_side: int
) -> Iterator[ClipMedia]:
    """The frames and audio the standard clips of `plans` would hold, cut by the same graph but
    never encoded: analysis reads these straight from the source, so a clip it rejects costs no
    x264 encode and no second decode. One ffmpeg pass decodes the group's span once into raw
    files in a temporary folder; they are loaded one clip at a time (memory: one clip's frames).
    Raises `RuntimeError` with ffmpeg's message when the pass fails."""
    width, height = standard_size(probe, config)
    w, h = analysis_size(width, height, max_side)
    seek = _seek(plans)
    tail = f"scale={w}:{h}:flags=bilinear,setsar=1,format=rgb24"  # the scaler read_clip (PyAV) uses
    with tempfile.TemporaryDirectory(prefix="anytalker-decode-") as tmp:
        cmd = _input(Path(source), seek) + ["-filter_complex", _cut_graph(probe, plans, config, seek, tail)]
        for i in range(len(plans)):
            cmd += ["-map", f"[ov{i}]", "-fps_mode", "passthrough", "-f", "rawvideo", f"{tmp}/{i}.rgb",
                    "-map", f"[oa{i}]", "-f", "f32le", "-ac", "1", f"{tmp}/{i}.pcm"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError((proc.stderr.strip().splitlines() or [f"ffmpeg exit {proc.returncode}"])[-1])
        for i, plan in enumerate(plans):
            frames = np.fromfile(f"{tmp}/{i}.rgb", np.uint8)
            expected = _frames(plan, config.fps)
            if frames.size != expected * h * w * 3:
                got = frames.size // (h * w * 3)
                raise RuntimeError(f"decoded {got} frames of clip {plan.clip_id}, expected {expected}")
            audio = np.fromfile(f"{tmp}/{i}.pcm", np.float32)
            frames = frames.reshape(expected, h, w, 3)
            yield ClipMedia(frames, config.fps, width, height, width / w, audio, config.audio_rate)
            Path(f"{tmp}/{i}.rgb").unlink()


def inspect_clip(path: Path) -> dict:
    """Facts of a written clip, from its packets: the check before it becomes visible."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        frames = sum(1 for p in container.demux(video) if p.size > 0)
        return {
            "n_frames": frames,
            "width": video.codec_context.width,
            "height": video.codec_context.height,
            "fps": float(video.average_rate or 0),
            "audio_rate": audio.codec_context.sample_rate if audio else 0,
            "audio_channels": audio.codec_context.channels if audio else 0,
        }


def _run_group(
    source: Path, probe: Probe, plans: Sequence[ClipPlan], finals: Sequence[Path], config: StandardizeConfig
) -> list[ClipResult]:
    temps = [f.with_name(f".{f.name}.{os.getpid()}.part") for f in finals]
    for f in finals:
        f.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(build_command(source, probe, plans, temps, config), capture_output=True, text=True)
    results = []
    try:
        if proc.returncode != 0:
            message = (proc.stderr.strip().splitlines() or [f"ffmpeg exit {proc.returncode}"])[-1]
            return [ClipResult(p, None, rejected=Reason.ENCODE_ERROR, detail=message) for p in plans]
        for plan, temp, final in zip(plans, temps, finals, strict=True):
            facts = inspect_clip(temp)
            expected = _frames(plan, config.fps)
            if facts["n_frames"] != expected:
                detail = f"wrote {facts['n_frames']} frames, expected {expected}"
                results.append(ClipResult(plan, None, rejected=Reason.ENCODE_ERROR, detail=detail))
                continue
            os.replace(temp, final)
            results.append(ClipResult(plan, str(final), n_frames=facts["n_frames"], metrics=facts))
        return results
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)


def standardize(
    source: str | Path, source_id: str, probe: Probe, plans: Sequence[ClipPlan], workdir: Path, config: StandardizeConfig
) -> list[ClipResult]:
    """Write every accepted plan as a standard clip; too_short plans pass through as rejections.

    Clips already on disk (from an interrupted earlier run) are checked and kept, not re-cut.
    A group whose ffmpeg run fails is retried clip by clip, so one bad stretch of a source
    costs only its own clips.
    """
    source = Path(source)
    results: dict[str, ClipResult] = {}
    todo: list[ClipPlan] = []
    for plan in plans:
        final = clip_path(workdir, source_id, plan.clip_id)
        if plan.rejected is not None:
            results[plan.clip_id] = ClipResult(plan, None, rejected=plan.rejected, detail=f"{plan.length_s:.2f} s")
        elif final.exists():
            facts = inspect_clip(final)
            results[plan.clip_id] = ClipResult(plan, str(final), n_frames=facts["n_frames"], metrics=facts)
        else:
            todo.append(plan)
    size = config.clips_per_pass
    for k in range(0, len(todo), size):
        group = todo[k : k + size]
        finals = [clip_path(workdir, source_id, p.clip_id) for p in group]
        outcome = _run_group(source, probe, group, finals, config)
        if len(group) > 1 and any(r.rejected is Reason.ENCODE_ERROR for r in outcome):
            outcome = [r for p, f in zip(group, finals, strict=True) for r in _run_group(source, probe, [p], [f], config)]
        for r in outcome:
            results[r.plan.clip_id] = r
    return [results[p.clip_id] for p in plans]
