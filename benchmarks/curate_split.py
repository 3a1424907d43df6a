"""Ingest + split + standardize against a bare decode of the same footage, as a ratio.

    .venv/bin/python benchmarks/curate_split.py [VIDEO_DIR] [--repeat N] [--kept WORKDIR]

With --kept, only the clips that a curate run into WORKDIR wrote (the ones analysis kept: the
flow encodes nothing else) are encoded, as the curate flow does; the line for every clip
encoded (what the flow did before, and does with `standardize.write_rejected`) is printed too.

Both sides run in this process, one file after another, on the same files: the bare side is
`ffmpeg -i X -f null -` (a full decode, every core ffmpeg wants); the pipeline side is the
plain stage functions the curate flow calls (hash, probe, detect shots, cut standard clips),
without Prefect, so the ratio is the cost of the work and not of orchestration.
A third line, one plain `ffmpeg` transcode per file at the clips' x264 settings, shows what any
pipeline that re-encodes must pay, and how far above that floor the split and probe take us.
Goal from the issue: the pipeline within 3x of the bare decode.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tasks.config import CurateConfig
from tasks.curation.ingest import hash_file
from tasks.curation.probe import probe
from tasks.curation.split import detect_cut_frames, plan_clips, shots_from_cuts
from tasks.curation.standardize import standardize

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"


def bare_decode(files: list[Path], workers: int) -> float:
    def decode(f: Path) -> None:
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(f), "-f", "null", "-"], check=True)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(decode, files))
    return time.perf_counter() - start


def transcode_floor(files: list[Path], config: CurateConfig, workers: int, out: Path) -> float:
    """One plain ffmpeg transcode per file at the clips' settings: what any re-encoding costs."""
    std = config.standardize

    def transcode(f: Path) -> None:
        subprocess.run(
            ["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(f), "-vf", f"fps={std.fps:g}", "-c:v", "libx264",
             "-preset", std.preset, "-crf", str(std.crf), "-c:a", "aac", "-ar", str(std.audio_rate), "-ac", "1",
             "-f", "mp4", str(out / f"{f.stem}.mp4")],
            check=True,
        )  # fmt: skip

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(transcode, files))
    return time.perf_counter() - start


def kept_clips(workdir: Path) -> set[str]:
    """Ids of the clips a curate run wrote (clip ids come from content, so they match this run's)."""
    from tasks.catalog import Catalog

    with Catalog(workdir) as catalog:
        return {i["clip"] for i in catalog.report()["items"] if i.get("clip") and i["metrics"].get("path")}


def pipeline(
    files: list[Path], workdir: Path, config: CurateConfig, workers: int, kept: set[str] | None = None
) -> tuple[float, dict[str, float], int, float]:
    """The stage functions per file, `workers` files at a time (the flow's thread pool does the
    same); with `kept`, only those clips are encoded."""
    stages: dict[str, float] = defaultdict(float)
    written: list = []

    def one(f: Path) -> None:
        t = time.perf_counter()
        source_id, _ = hash_file(f)
        stages["hash"] += time.perf_counter() - t
        t = time.perf_counter()
        facts, times = probe(f, config.ingest)
        stages["probe"] += time.perf_counter() - t
        t = time.perf_counter()
        cuts = detect_cut_frames(f, config.split, facts.n_frames)
        stages["detect"] += time.perf_counter() - t
        t = time.perf_counter()
        plans = plan_clips(source_id, shots_from_cuts(cuts, times), config.split, config.standardize.fps)
        plans = [p for p in plans if kept is None or p.clip_id in kept]
        results = standardize(f, source_id, facts, plans, workdir, config.standardize)
        stages["standardize"] += time.perf_counter() - t
        written.extend(r for r in results if r.path)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, files))
    wall = time.perf_counter() - start
    return wall, dict(stages), len(written), sum(r.plan.length_s for r in written)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--repeat", type=int, default=2, help="Runs of each side; the best is kept.")
    parser.add_argument("--preset", help="x264 preset for the clips (default: the config's default).")
    parser.add_argument("--kept", type=Path, help="A curate work directory: encode only the clips it wrote.")
    args = parser.parse_args()
    files = sorted(args.videos.glob("*.mp4"))
    if not files:
        raise SystemExit(f"no .mp4 files in {args.videos}")
    overrides: dict = {"ingest": {"require_audio": False}}
    if args.preset:
        overrides["standardize"] = {"preset": args.preset}
    config = CurateConfig.model_validate(overrides)
    print(f"x264 preset: {config.standardize.preset}, crf {config.standardize.crf}")
    footage = sum(probe(f, config.ingest)[0].duration_s for f in files)
    print(f"footage: {len(files)} files, {footage:.1f} s")
    kept = kept_clips(args.kept) if args.kept else None
    if kept is not None:
        print(f"kept clips (written by the curate run in {args.kept}): {len(kept)}")
    for workers in (1, 2):
        bare = min(bare_decode(files, workers) for _ in range(args.repeat))
        with tempfile.TemporaryDirectory() as tmp:
            floor = min(transcode_floor(files, config, workers, Path(tmp)) for _ in range(args.repeat))
        print(f"-- {workers} file(s) at a time on every side")
        print(f"bare decode (ffmpeg -f null): {bare:.2f} s  ({footage / bare:.1f} s of footage per s)")
        print(f"plain transcode, same x264:   {floor:.2f} s  ({floor / bare:.2f}x bare decode: the floor of re-encoding)")
        for name, only in (("every clip encoded", None), ("kept clips encoded", kept)):
            if name.startswith("kept") and kept is None:
                continue
            best = None
            for _ in range(args.repeat):
                with tempfile.TemporaryDirectory() as tmp:
                    run = pipeline(files, Path(tmp), config, workers, only)
                best = run if best is None or run[0] < best[0] else best
            assert best is not None
            wall, stages, clips, seconds_out = best
            busy = sum(stages.values())
            print(f"ingest+split+standardize, {name} ({clips} clips, {seconds_out:.1f} s): {wall:.2f} s "
                  f"({footage / wall:.1f} s of footage per s)")  # fmt: skip
            print("  share of stage time: " + ", ".join(f"{k} {100 * v / busy:.0f}%" for k, v in stages.items()))
            print(f"  ratio pipeline / bare decode: {wall / bare:.2f}x (goal: within 3x)")


if __name__ == "__main__":
    main()
