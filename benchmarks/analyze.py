"""Clip analysis throughput: seconds of footage analysed per wall second per core, and where
the time goes.

    .venv/bin/python benchmarks/analyze.py [VIDEO_DIR]

Every video of ../shared/data/videos is made a standard clip (25 fps, 16 kHz mono) and run
through the same `analyze_clip` the curate flow calls, one clip after another in one process
(models loaded once, as in a flow worker). The speech stage runs in the speech worker process;
its time is wall time seen from here. Each clip is analysed again (a copy) with `every_metric`,
so the last line says what cheap checks first saves, on all clips and on the rejected ones.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from tasks.config import CurateConfig
from tasks.curation.analysis.analyze import analyze_clip, check_models
from tasks.curation.clipmedia import read_audio

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="?", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args()
    config = CurateConfig()
    start = time.perf_counter()
    check_models(config)
    load = time.perf_counter() - start
    every_config = config.model_copy(update={"every_metric": True})
    stages: dict[str, float] = defaultdict(float)
    footage = wall = every_wall = rejected_s = rejected_every_s = 0.0
    same = True
    with tempfile.TemporaryDirectory() as tmp:
        for src in sorted(args.videos.glob("*.mp4")):
            clip = Path(tmp) / f"{src.stem}.mp4"
            subprocess.run(
                ["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(src), "-t", "15", "-r", "25", "-c:v", "libx264",
                 "-preset", "veryfast", "-c:a", "aac", "-ar", "16000", "-ac", "1", str(clip)],
                check=True,
            )  # fmt: skip
            samples = read_audio(clip).size
            if samples == 0:  # a clip without audio gets the silent track the flow would give it
                silent = clip.with_name(f"{clip.stem}.silent.mp4")
                subprocess.run(
                    ["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(clip), "-f", "lavfi", "-i",
                     "anullsrc=r=16000:cl=mono", "-shortest", "-c:v", "copy", "-c:a", "aac", str(silent)],
                    check=True,
                )  # fmt: skip
                clip = silent
                samples = read_audio(clip).size
            footage += samples / 16000
            twin = shutil.copy(clip, clip.with_name(f"{clip.stem}.every.mp4"))  # an accepted clip's audio may be moved
            t = time.perf_counter()
            result = analyze_clip(clip, "bench", src.stem, Path(tmp) / "work", config)
            spent = time.perf_counter() - t
            wall += spent
            for stage, seconds in result.seconds.items():
                stages[stage] += seconds
            t = time.perf_counter()
            every = analyze_clip(twin, "bench", f"{src.stem}-every", Path(tmp) / "work", every_config)
            every_spent = time.perf_counter() - t
            every_wall += every_spent
            if result.rejected is not None:
                rejected_s += spent
                rejected_every_s += every_spent
            same &= every.rejected == result.rejected
            print(f"{src.stem[:40]:40s} {result.rejected or 'accepted':16s} {spent:6.1f} s  (every metric "
                  f"{every_spent:6.1f} s)", flush=True)  # fmt: skip
    cores = os.cpu_count() or 1
    busy = sum(stages.values())
    print(f"\nmodels loaded once in {load:.1f} s (face pack, landmarker, speech worker)")
    print(f"footage {footage:.1f} s analysed in {wall:.1f} s on {cores} cores: "
          f"{footage / wall:.2f} s of footage per wall second, {footage / wall / cores:.2f} per core")  # fmt: skip
    print("share of time: " + ", ".join(f"{k} {100 * v / busy:.0f}%" for k, v in sorted(stages.items(), key=lambda x: -x[1])))
    print(f"cheap checks first against every metric: all clips {wall / every_wall:.2f}x, rejected clips "
          f"{rejected_s / max(rejected_every_s, 1e-9):.2f}x; same verdicts: {same}")  # fmt: skip


if __name__ == "__main__":
    main()
