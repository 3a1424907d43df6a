"""Face detection: SCRFD at the frame's own size (`detector_size`) against insightface's fixed
640x640 letterbox, on the same decoded frames, one run.

    .venv/bin/python benchmarks/face_detect.py [VIDEO_DIR]

Each video of ../shared/data/videos (first 15 s, analysis frames as the curate flow decodes
them) goes through `analyze_faces` twice: once with every frame letterboxed into 640x640 (what
`FaceAnalysis.get` does with det_size=(640, 640)), once at `detector_size`. Prints per video the
detector input, the time of each and whether the face facts the verdict reads agree, then the
ratio over all videos.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import tasks.curation.analysis.faces as faces
from tasks.config import CurateConfig
from tasks.curation.clipmedia import read_clip

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"
LETTERBOX = (640, 640)


def _run(media, model: str, config: CurateConfig) -> tuple[faces.FaceSummary, float]:
    start = time.perf_counter()
    summary = faces.analyze_faces(media, model, config.faces.sample_fps, config.faces.count_min_ratio)
    return summary, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="?", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args()
    config = CurateConfig()
    model = faces.resolve_face_models(config.faces.model)
    faces.face_analysis(model)
    own_size = faces.detector_size
    totals = {"letterbox": 0.0, "own": 0.0}
    for src in sorted(args.videos.glob("*.mp4")):
        media = read_clip(src, config.faces.analysis_max_side)
        n = int(15 * media.fps)
        media = dataclasses.replace(media, frames=media.frames[:n])
        pad = max(media.frames.shape[1:3]) // 8
        size = own_size(media.frames.shape[1] + 2 * pad, media.frames.shape[2] + 2 * pad)
        faces.detector_size = lambda height, width: LETTERBOX
        boxed, boxed_s = _run(media, model, config)
        faces.detector_size = own_size
        own, own_s = _run(media, model, config)
        totals["letterbox"] += boxed_s
        totals["own"] += own_s
        a, b = boxed.metrics(), own.metrics()
        same = {k: a[k] == b[k] for k in ("face_count_max", "multi_face_ratio", "face_coverage")}
        print(f"{src.stem[:36]:36s} frame {media.frames.shape[2]}x{media.frames.shape[1]} input {size[0]}x{size[1]}: "
              f"{boxed_s:5.1f} s -> {own_s:5.1f} s  size {a['face_size_px']:.0f}->{b['face_size_px']:.0f} px, "
              f"yaw {a['yaw_deg']:.0f}->{b['yaw_deg']:.0f}, counts/coverage same: {all(same.values())}"
              + ("" if all(same.values()) else f" {a} -> {b}"), flush=True)  # fmt: skip
    ratio = totals["letterbox"] / max(totals["own"], 1e-9)
    print(f"\nface stage over all videos: letterbox 640x640 {totals['letterbox']:.1f} s, own size "
          f"{totals['own']:.1f} s: {ratio:.2f}x faster")  # fmt: skip


if __name__ == "__main__":
    main()
