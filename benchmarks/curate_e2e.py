"""The whole curate flow, end to end: footage curated per wall second per core, and where the
time goes, with cheap checks first (the default) and with every metric measured, and against an
earlier commit's flow on the same footage.

    .venv/bin/python benchmarks/curate_e2e.py [VIDEO ...] [--workers 2] [--baseline REV] [--keep DIR]

Runs the `curate` flow (against a local Prefect server started first; local thread pool;
in either process, models loaded and the speech worker started before a run is timed: `warm_up`) on every video of
../shared/data/videos into fresh work directories: `every_metric: false` (a clip an early check
rejects skips the later stages), then `every_metric: true` (every stage on every clip). With
--baseline, REV's curate flow (a git worktree of that commit, in its own process, same server,
its default config) runs first on the same videos: the before of a before/after table.
Prints footage seconds per wall second per core, footage-hours per core-day, the share of time
by phase and by stage (summed over workers), how many clips were encoded, whether the runs
reached the same verdicts, and every clip's verdict. The speech stage runs in the speech worker
process; its time is wall time seen from the flow. --keep leaves the cheap-checks run's work
directory in DIR (for `benchmarks/curate_split.py --kept DIR`). --min-detect-px N adds a third run,
cheap checks first with `faces.min_detect_px: N` (SCRFD searched at a reduced input), and its
ratio and verdict differences against the default.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from curate_ray import footage_seconds, verdict_table  # benchmarks/ is the script's folder

from anytalker.local_prefect import start_server

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"
REPO = Path(__file__).resolve().parents[1]
REDUCED = "reduced face search"


def warm_up(workers: int) -> None:
    """Load the models and start the speech worker as the flow does before it works, on the thread
    budget its tasks get, so that no run is timed paying for start-up. It runs in the baseline's
    process too, as source: before the thread budget (a2b198b) there is none."""
    from contextlib import nullcontext

    from tasks.config import CurateConfig
    from tasks.curation.analysis.analyze import check_models

    try:
        from tasks.models import model_threads, threads_per_task

        budget = model_threads(threads_per_task(workers))
    except ImportError:
        budget = nullcontext()
    with budget:
        check_models(CurateConfig())


BASELINE_RUN = inspect.getsource(warm_up) + """
import json, sys, time
from flows.curate import curate
from tasks.config import CurateConfig
warm_up(CurateConfig().workers)  # the baseline runs with its default config
start = time.perf_counter()
result = curate(inputs=json.loads(sys.argv[1]), workdir=sys.argv[2], config_path=None)
print("RESULT " + json.dumps({"seconds": time.perf_counter() - start, "run": result["run"]}))
"""


def run(videos: list[Path], work: Path, workers: int, every_metric: bool, extra: str = "") -> tuple[float, dict, dict]:
    """One curate run (`extra`: more lines of its YAML config): wall seconds, the run's
    statistics, and the verdict of every clip."""
    from flows.curate import curate
    from tasks.catalog import Catalog

    config = work.with_suffix(".yaml")
    config.write_text(f"workers: {workers}\nevery_metric: {str(every_metric).lower()}\n{extra}")
    start = time.perf_counter()
    result = curate(inputs=[str(v) for v in videos], workdir=str(work), config_path=str(config))
    seconds = time.perf_counter() - start
    with Catalog(work) as catalog:
        items = catalog.report()["items"]
    return seconds, result["run"], verdict_table(items)


def _baseline_env(tree: Path) -> dict[str, str]:
    """The worktree has no environments of its own: it borrows this checkout's speech worker."""
    speech = os.environ.get("ANYTALKER_SPEECH_PYTHON") or str(REPO / ".venv-speech" / "bin" / "python")
    return {**os.environ, "PYTHONPATH": str(tree), "ANYTALKER_SPEECH_PYTHON": speech}


def run_baseline(rev: str, videos: list[Path], work: Path) -> tuple[float, dict, dict]:
    """REV's curate flow on the same videos, from a git worktree, in its own process."""
    from tasks.catalog import Catalog

    tree = work.parent / f"tree-{rev}"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), rev], check=True,
                   capture_output=True)  # fmt: skip
    try:
        done = subprocess.run([sys.executable, "-c", BASELINE_RUN, json.dumps([str(v) for v in videos]), str(work)],
                              cwd=tree, env=_baseline_env(tree), capture_output=True, text=True)  # fmt: skip
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not lines:
            raise SystemExit(f"the baseline run failed:\n{done.stderr[-3000:]}")
        result = json.loads(lines[-1][len("RESULT ") :])
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)
    with Catalog(work) as catalog:
        items = catalog.report()["items"]
    return result["seconds"], result["run"], verdict_table(items)


def stage_seconds(stats: dict) -> dict[str, float]:
    return stats.get("stage_seconds") or stats.get("analysis_seconds") or {}


def describe(name: str, seconds: float, stats: dict, footage: float, cores: int) -> None:
    rate = footage / seconds / cores
    phases = stats.get("phase_seconds", {})
    stages = stage_seconds(stats)
    total_stage = sum(stages.values()) or 1.0
    print(f"{name}: {seconds:.1f} s wall; {footage / seconds:.2f} s of footage per wall second, {rate:.2f} per core, "
          f"{rate * 24:.1f} footage-hours per core-day")  # fmt: skip
    print("  phases: " + ", ".join(f"{k} {v / seconds:.0%}" for k, v in phases.items()))
    shares = ", ".join(f"{k} {v / total_stage:.0%}" for k, v in sorted(stages.items(), key=lambda kv: -kv[1]))
    print(f"  stage time {total_stage:.1f} s summed over workers: {shares}")
    if "written_clips" in stats:
        print(f"  clips encoded: {stats['written_clips']} of {stats['new_clips']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="*", type=Path)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--baseline", help="A git revision whose curate flow runs first, for a before/after table.")
    parser.add_argument("--keep", type=Path, help="Leave the cheap-checks run's work directory here.")
    parser.add_argument("--min-detect-px", type=int, help="Also run cheap checks first with this faces.min_detect_px.")
    args = parser.parse_args()
    videos = args.videos or sorted(SHARED.glob("*.mp4"))
    if not videos:
        raise SystemExit(f"no videos given and none in {SHARED}")
    footage = footage_seconds(videos)
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="e2e", dir="/tmp") as tmp, start_server(Path(tmp) / "prefect") as server:
        root = Path(tmp)
        os.environ.update(server.env())  # a server already up: neither run pays for its start
        warm_up(args.workers)
        runs = {}
        if args.baseline:
            runs[f"baseline {args.baseline}"] = run_baseline(args.baseline, videos, root / "baseline")
        for name, every in (("cheap checks first", False), ("every metric", True)):
            runs[name] = run(videos, root / name.replace(" ", "-"), args.workers, every)
        if args.min_detect_px:
            runs[REDUCED] = run(videos, root / "reduced", args.workers, False,
                                f"faces:\n  min_detect_px: {args.min_detect_px}\n")  # fmt: skip
        if args.keep:
            shutil.rmtree(args.keep, ignore_errors=True)
            shutil.copytree(root / "cheap-checks-first", args.keep)
    print(f"{len(videos)} videos, {footage:.1f} s of footage, {cores} cores, {args.workers} workers")
    for name, (seconds, stats, verdicts) in runs.items():
        describe(name, seconds, stats, footage, cores)
        skipped = sum(1 for v in verdicts.values() if v != "accepted")
        print(f"  clips: {len(verdicts)}, rejected {skipped}")
    (every_s, _, every_v), (cascade_s, _, cascade_v) = runs["every metric"], runs["cheap checks first"]
    every_task = sum(stage_seconds(runs["every metric"][1]).values())
    cascade_task = sum(stage_seconds(runs["cheap checks first"][1]).values())
    print(f"ratio cheap-checks-first / every-metric: wall {cascade_s / every_s:.2f}x, "
          f"stage time {cascade_task / every_task:.2f}x")  # fmt: skip
    print(f"same verdicts: {every_v == cascade_v}")
    if args.baseline:
        base_s, _, base_v = runs[f"baseline {args.baseline}"]
        print(f"ratio cheap-checks-first / baseline {args.baseline}: wall {cascade_s / base_s:.2f}x "
              f"(throughput {base_s / cascade_s:.2f}x); same verdicts: {base_v == cascade_v}")  # fmt: skip
        for key in sorted(set(base_v) | set(cascade_v), key=str):
            if base_v.get(key) != cascade_v.get(key):
                print(f"  {key}: baseline {base_v.get(key)}, now {cascade_v.get(key)}")
    if REDUCED in runs:
        reduced_s, _, reduced_v = runs[REDUCED]
        reduced_task = sum(stage_seconds(runs[REDUCED][1]).values())
        print(f"ratio reduced face search / cheap-checks-first: wall {reduced_s / cascade_s:.2f}x, stage time "
              f"{reduced_task / cascade_task:.2f}x; same verdicts: {reduced_v == cascade_v}")  # fmt: skip
        for key in sorted(set(reduced_v) | set(cascade_v), key=str):
            if reduced_v.get(key) != cascade_v.get(key):
                print(f"  {key}: cheap checks first {cascade_v.get(key)}, reduced face search {reduced_v.get(key)}")
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
