"""How well the lip-sync estimate finds known audio shifts on real talking clips.

    .venv/bin/python benchmarks/sync_shift.py [VIDEO_DIR]

For every single-person talking clip of ../shared/data (PC-AVS, video-retalking, LivePortrait
d11) it makes a standard clip, then copies whose audio is moved by -10, -6, -3, +3, +6 and +10
frames (ffmpeg: `adelay` for late audio, `atrim` for early), runs the weight-free estimate on
each copy (faces and landmarks once per clip, the copy's own audio), and prints, per shift:
how far the estimate lands from the truth, how often it is within 2 frames, how often it is
confident, and what the verdict rules would do with the copy: reject it as out_of_sync,
re-align it (and how many end within 2 frames of true sync), or keep it unaligned.

The SyncNet backend is not measured: no SyncNet weights exist offline, and random weights
say nothing. Use `--backend syncnet --syncnet-model syncnet_v2.model` where you have them.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from tasks.clipmedia import read_audio, read_clip
from tasks.config import CurateConfig
from tasks.faces import analyze_faces, resolve_face_models
from tasks.landmarks import analyze_landmarks, resolve_landmarker
from tasks.sync import estimate_offset, syncnet_offset
from tasks.syncnet import load_syncnet
from tasks.verdict import judge_sync, sync_is_confident

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"
TALKING = ["PC-AVS__*.mp4", "video-retalking__*.mp4", "LivePortrait__d11.mp4"]
SHIFTS = (-10, -6, -3, 0, 3, 6, 10)


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True)


def shifted_copy(clip: Path, frames: int, fps: float, out: Path) -> Path:
    """`clip` with its audio `frames` later (positive) or earlier (negative), same length."""
    seconds = abs(frames) / fps
    audio = f"adelay={int(seconds * 1000)}:all=1" if frames > 0 else f"atrim=start={seconds},asetpts=PTS-STARTPTS,apad"
    ffmpeg("-i", str(clip), "-af", audio, "-c:v", "copy", "-c:a", "aac", "-ar", "16000", "-ac", "1", "-shortest", str(out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--backend", choices=("estimate", "syncnet"), default="estimate")
    parser.add_argument("--syncnet-model", type=Path)
    args = parser.parse_args()
    config = CurateConfig()
    rules = config.verdict
    model = load_syncnet(args.syncnet_model) if args.backend == "syncnet" else None
    clips = sorted(p for pattern in TALKING for p in args.videos.glob(pattern))
    rows: dict[int, list[tuple[int, float]]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        for src in clips:
            clip = Path(tmp) / f"{src.stem}.mp4"
            ffmpeg("-i", str(src), "-r", "25", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-c:a", "aac",
                   "-ar", "16000", "-ac", "1", str(clip))  # fmt: skip
            media = read_clip(clip)
            faces = analyze_faces(media, resolve_face_models(config.faces.model), 5, 0.3)
            landmarks = analyze_landmarks(media, faces.boxes, resolve_landmarker(config.faces.landmarker))
            line = []
            for shift in SHIFTS:
                copy = clip if shift == 0 else shifted_copy(clip, shift, media.fps, Path(tmp) / f"{src.stem}.{shift}.mp4")
                media.audio = read_audio(copy)
                if model is not None:
                    est = syncnet_offset(model, media, faces.boxes)
                else:
                    est = estimate_offset(media, landmarks)
                rows[shift].append((est.offset_frames, est.confidence))
                line.append(f"{shift:+d}->{est.offset_frames:+d} ({est.confidence:.2f})")
            print(f"{src.stem[:34]:34s} " + "  ".join(line), flush=True)
    # The originals may carry a small offset of their own: errors are against shift + the
    # unshifted estimate only where that is confident; otherwise against the shift itself.
    print(f"\n{len(clips)} clips; min_sync_confidence {rules.min_sync_confidence}, "
          f"max_sync_offset_frames {rules.max_sync_offset_frames}")  # fmt: skip
    print("shift  mean|err|  within2  confident  rejected  realigned(ok)  kept-unaligned")
    for shift in SHIFTS:
        est = np.array([o for o, _ in rows[shift]])
        conf = np.array([c >= rules.min_sync_confidence for _, c in rows[shift]])
        err = np.abs(est - shift)
        rejected = conf & (np.abs(est) > rules.max_sync_offset_frames)
        realigned = conf & ~rejected
        realigned_ok = realigned & (err <= 2)
        kept = ~conf
        print(f"{shift:+4d}   {err.mean():7.1f}   {np.mean(err <= 2):6.0%}   {conf.mean():8.0%}   {rejected.mean():7.0%}"
              f"   {realigned.mean():5.0%} ({realigned_ok.sum()}/{realigned.sum()})   {kept.mean():7.0%}")  # fmt: skip
    for policy in ("keep", "offset", "reject"):
        rules = config.verdict.model_copy(update={"uncertain_sync": policy})

        def outcome(offset: int, conf: float, shift: int) -> str:
            metrics = {"sync_offset_frames": offset, "sync_confidence": conf}
            if judge_sync(metrics, rules) is not None:
                return "rejected"
            if sync_is_confident(metrics, rules) and abs(offset - shift) <= 2:
                return "in_sync"  # re-aligned (or already) within 2 frames
            return "in_sync" if shift == 0 and not sync_is_confident(metrics, rules) else "passes"

        kept = sum(outcome(o, c, 0) != "rejected" for o, c in rows[0])
        ten = [outcome(o, c, s) for s in (-10, 10) for o, c in rows[s]]
        bad = [outcome(o, c, s) for s in SHIFTS if abs(s) >= 6 for o, c in rows[s]]
        print(f"uncertain_sync={policy:6s}: unshifted clips accepted {kept}/{len(rows[0])}; "
              f"10-frame copies rejected or re-aligned {sum(x != 'passes' for x in ten)}/{len(ten)}; "
              f"6- or 10-frame copies that pass out of sync {bad.count('passes')}/{len(bad)}")  # fmt: skip


if __name__ == "__main__":
    main()
