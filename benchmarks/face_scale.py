"""Face detection at a reduced input: how small may SCRFD's input be, and what it saves.

    .venv/bin/python benchmarks/face_scale.py [VIDEO ...] [--min-detect-px 32]

Part 1, how tall a face must be in SCRFD's input to be found as at full size. Every other face
sample of each video (first 15 s, analysis frames as the curate flow decodes them, padded as
`padded_for_detection` does) is searched at full size (`detector_size`), then again at inputs
0.75 .. 0.15 as large; a face found at full size counts as found again when a face overlaps it by
IoU > 0.5. Printed: the share found by the face's height in the smaller input, and, leave one
video out, the smallest height at which every face scored 0.6 or more at full size is found on
the other videos, and how that height holds on the video left out.

Part 2, the face stage both ways: `analyze_faces` on each video (first 15 s) at full size
(`min_input_px` 0) and with `--min-detect-px` (what `faces.min_detect_px` sets); the time of each,
the share of searches at a reduced size, and the face facts the verdict reads.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

import tasks.curation.analysis.faces as faces
from tasks.config import CurateConfig
from tasks.curation.clipmedia import read_clip

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DEFAULT_VIDEOS = sorted((SHARED / "data" / "videos").glob("*.mp4")) + [SHARED / "anytalker" / "benchmark" / "interact_11.mp4"]
SCALES = (0.75, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15)
EDGES = (0, 8, 12, 16, 20, 24, 28, 32, 40, 48, 64, 96)
SURE = 0.6  # a face scored this much at full size is not one that flickers around SCRFD's 0.5


@dataclasses.dataclass
class Seen:
    video: str
    height_in: float  # the face's height in the smaller input, pixels
    score: float  # its score at full size
    found: bool
    size_error: float | None  # |height found - height at full size| / height at full size


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return faces.iou(a[:4], b[:4])


def measure_recall(videos: list[Path], detector) -> list[Seen]:
    seen: list[Seen] = []
    for src in videos:
        media = read_clip(src, 640)
        step = 2 * faces.sample_step(media.fps, 5.0)
        for f in range(0, min(len(media.frames), int(15 * media.fps)), step):
            bgr, _, full = faces.padded_for_detection(media.frames[f])
            reference, _ = detector.detect(bgr, input_size=full)
            for scale in SCALES:
                size = faces.stride_size(full[0] * scale, full[1] * scale)
                got, _ = detector.detect(bgr, input_size=size)
                ratio = min(size[0] / bgr.shape[1], size[1] / bgr.shape[0])
                for ref in reference:
                    height = float(ref[3] - ref[1])
                    overlaps = [(_iou(ref, g), g) for g in got]
                    best = max(overlaps, key=lambda o: o[0], default=(0.0, None))
                    found = best[0] > 0.5
                    error = abs(float(best[1][3] - best[1][1]) - height) / height if found else None
                    seen.append(Seen(src.stem, height * ratio, float(ref[4]), found, error))
        print(f"  {src.stem}: {sum(s.video == src.stem for s in seen)} face comparisons", flush=True)
    return seen


def smallest_sure_height(seen: list[Seen]) -> int:
    """The smallest edge above which every face scored SURE or more at full size is found."""
    for edge in EDGES:
        if all(s.found for s in seen if s.height_in >= edge and s.score >= SURE):
            return edge
    return EDGES[-1]


def print_recall(seen: list[Seen]) -> None:
    print("found again, by the face's height in the smaller input:")
    for lo, hi in zip(EDGES, EDGES[1:] + (10**6,), strict=True):
        band = [s for s in seen if lo <= s.height_in < hi]
        sure = [s for s in band if s.score >= SURE]
        errors = [s.size_error for s in band if s.size_error is not None]
        if band:
            print(f"  {lo:3d}-{hi if hi < 10**6 else '':<4} px: {np.mean([s.found for s in band]):.3f} of {len(band):4d}"
                  f" (scored >= {SURE} at full size: {np.mean([s.found for s in sure]) if sure else float('nan'):.3f} of"
                  f" {len(sure):4d}); height error median {np.median(errors) if errors else 0:.3f}")  # fmt: skip
    print("leave one video out: the height fitted on the others, and on the video left out")
    for video in sorted({s.video for s in seen}):
        edge = smallest_sure_height([s for s in seen if s.video != video])
        held = [s for s in seen if s.video == video and s.height_in >= edge]
        missed = [s for s in held if not s.found]
        print(f"  {video[:36]:36s} fitted {edge} px; held out: {len(held) - len(missed)} of {len(held)} found"
              + (f", missed scored {sorted({round(s.score, 2) for s in missed})} at full size" if missed else ""))  # fmt: skip


def compare_stage(videos: list[Path], model: str, config: CurateConfig, min_detect_px: int) -> None:
    print(f"the face stage at full size and with faces.min_detect_px = {min_detect_px}:")
    calls: list[tuple[int, int]] = []
    detector = faces.face_analysis(model).det_model
    plain = detector.detect

    def counted(img, input_size=None, **kwargs):
        calls.append(input_size)
        return plain(img, input_size=input_size, **kwargs)

    detector.detect = counted
    totals = [0.0, 0.0]
    keys = ("face_count_max", "multi_face_ratio", "face_coverage", "face_size_px", "yaw_deg")
    try:
        for src in videos:
            media = read_clip(src, config.faces.analysis_max_side)
            media = dataclasses.replace(media, frames=media.frames[: int(15 * media.fps)])
            results = []
            for min_px in (0, min_detect_px):
                calls.clear()
                start = time.perf_counter()
                summary = faces.analyze_faces(media, model, config.faces.sample_fps, config.faces.count_min_ratio,
                                              min_input_px=min_px)  # fmt: skip
                results.append((summary.metrics(), time.perf_counter() - start, list(calls)))
            (full, full_s, _), (reduced, reduced_s, sizes) = results
            totals[0] += full_s
            totals[1] += reduced_s
            largest = max(sizes, key=lambda wh: wh[0] * wh[1])
            smaller = sum(wh[0] * wh[1] < largest[0] * largest[1] for wh in sizes)
            facts = ", ".join(f"{k} {full[k]}" + ("" if full[k] == reduced[k] else f"->{reduced[k]}") for k in keys)
            print(f"  {src.stem[:30]:30s} {full_s:5.2f} s -> {reduced_s:5.2f} s, {smaller} of {len(sizes)} searches"
                  f" smaller than {largest[0]}x{largest[1]}; {facts}", flush=True)  # fmt: skip
    finally:
        detector.detect = plain
    print(f"face stage over all videos: full size {totals[0]:.1f} s, reduced {totals[1]:.1f} s: "
          f"{totals[0] / totals[1]:.2f}x faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="*", type=Path, default=DEFAULT_VIDEOS)
    parser.add_argument("--min-detect-px", type=int, default=32, help="the reduced search's setting (default 32)")
    args = parser.parse_args()
    missing = [v for v in args.videos if not v.is_file()]
    if missing:
        raise SystemExit(f"not found: {', '.join(map(str, missing))} (default: ../shared's videos)")
    config = CurateConfig()
    model = faces.resolve_face_models(config.faces.model)
    detector = faces.face_analysis(model).det_model
    print_recall(measure_recall(args.videos, detector))
    compare_stage(args.videos, model, config, args.min_detect_px)


if __name__ == "__main__":
    main()
