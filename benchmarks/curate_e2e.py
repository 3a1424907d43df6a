"""The whole curate flow, end to end: footage curated per wall second per core, and where the
time goes, with cheap checks first (the default) and with every metric measured.

    .venv/bin/python benchmarks/curate_e2e.py [VIDEO ...] [--workers 2]

Runs the `curate` flow (against a local Prefect server started first; local thread pool;
models loaded and the speech worker started before either run is timed) on every video of
../shared/data/videos, twice, into fresh work directories: `every_metric: false` (a clip an
early check rejects skips the later stages), then `every_metric: true` (every stage on every
clip, what the analysis did before the cascade; second, so that warm caches favour it).
Prints footage seconds per wall second per core, footage-hours per core-day, the share of time
by phase and by analysis stage, the summed analysis task time (steadier than the wall of two
threads), whether both runs reached the same verdicts, and every clip's verdict. The speech
stage runs in the speech worker process; its time is wall time seen from the flow.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from curate_ray import footage_seconds, verdict_table  # benchmarks/ is the script's folder

from anytalker.local_prefect import start_server

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"


def run(videos: list[Path], work: Path, workers: int, every_metric: bool) -> tuple[float, dict, dict]:
    """One curate run: wall seconds, the run's statistics, and the verdict of every clip."""
    from flows.curate import curate
    from tasks.catalog import Catalog

    config = work.with_suffix(".yaml")
    config.write_text(f"workers: {workers}\nevery_metric: {str(every_metric).lower()}\n")
    start = time.perf_counter()
    result = curate(inputs=[str(v) for v in videos], workdir=str(work), config_path=str(config))
    seconds = time.perf_counter() - start
    with Catalog(work) as catalog:
        items = catalog.report()["items"]
    return seconds, result["run"], verdict_table(items)


def describe(name: str, seconds: float, stats: dict, footage: float, cores: int) -> None:
    rate = footage / seconds / cores
    phases = stats.get("phase_seconds", {})
    stages = stats.get("analysis_seconds", {})
    total_stage = sum(stages.values()) or 1.0
    analysis_wall = phases.get("analysis", 0.0)
    print(f"{name}: {seconds:.1f} s wall; {footage / seconds:.2f} s of footage per wall second, {rate:.2f} per core, "
          f"{rate * 24:.1f} footage-hours per core-day")  # fmt: skip
    print(f"  phases: ingest+split+standardize {phases.get('ingest_split', 0) / seconds:.0%}, "
          f"analysis {analysis_wall / seconds:.0%}")  # fmt: skip
    shares = ", ".join(f"{k} {analysis_wall * v / total_stage / seconds:.0%}"
                       for k, v in sorted(stages.items(), key=lambda kv: -kv[1]))  # fmt: skip
    print(f"  analysis stages, as shares of the whole run: {shares}")
    print(f"  analysis task time (all stages, summed over workers): {sum(stages.values()):.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="*", type=Path)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    videos = args.videos or sorted(SHARED.glob("*.mp4"))
    if not videos:
        raise SystemExit(f"no videos given and none in {SHARED}")
    footage = footage_seconds(videos)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="e2e", dir="/tmp") as tmp, start_server(Path(tmp) / "prefect") as server:
        root = Path(tmp)
        os.environ.update(server.env())  # a server already up: neither run pays for its start
        from tasks.analyze import check_models
        from tasks.config import CurateConfig

        check_models(CurateConfig())  # models loaded and the speech worker started before either run is timed
        runs = {}
        for name, every in (("cheap checks first", False), ("every metric", True)):
            runs[name] = run(videos, root / name.replace(" ", "-"), args.workers, every)
    print(f"{len(videos)} videos, {footage:.1f} s of footage, {cores} cores, {args.workers} workers")
    for name, (seconds, stats, verdicts) in runs.items():
        describe(name, seconds, stats, footage, cores)
        skipped = sum(1 for v in verdicts.values() if v != "accepted")
        print(f"  clips: {len(verdicts)}, rejected {skipped}")
    (every_s, _, every_v), (cascade_s, _, cascade_v) = runs["every metric"], runs["cheap checks first"]
    every_task = sum(runs["every metric"][1]["analysis_seconds"].values())
    cascade_task = sum(runs["cheap checks first"][1]["analysis_seconds"].values())
    print(f"ratio cheap-checks-first / every-metric: wall {cascade_s / every_s:.2f}x, "
          f"analysis task time {cascade_task / every_task:.2f}x")  # fmt: skip
    print(f"same verdicts: {every_v == cascade_v}")
    print("verdicts (cheap checks first), by source: clip start -> verdict")
    by_source: dict[str, list[str]] = {}
    for (source, start), verdict in sorted(cascade_v.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0.0)):
        by_source.setdefault(source, []).append(verdict if start is None else f"{start:.1f} s {verdict}")
    for source, verdicts in by_source.items():
        print(f"  {source}: " + ", ".join(verdicts))
    if every_v != cascade_v:
        for key in sorted(set(every_v) | set(cascade_v), key=str):
            if every_v.get(key) != cascade_v.get(key):
                print(f"  {key}: every metric {every_v.get(key)}, cheap checks first {cascade_v.get(key)}")


if __name__ == "__main__":
    main()
