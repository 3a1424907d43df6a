"""What running the curate flow's tasks on Ray costs against the local thread pool, same footage.

    .venv/bin/python benchmarks/curate_ray.py [VIDEO ...] [--sources-per-task N]

Starts a Prefect server and a one-node Ray cluster, both on 127.0.0.1, then runs
`anytalker curate` twice on the same videos into two fresh work directories: once on the local
thread pool (`workers` threads), once with `cluster.ray_address` set (each task asks Ray for its
CPUs), both with `cluster.sources_per_task` N (8; with four videos on two CPUs the flow makes it
1: a task run per source, its clips analysed inside). Prints wall seconds,
seconds of footage per wall second, the Ray/local ratio, and whether both runs reached the same
verdicts. On one machine Ray can only add overhead (worker start-up,
models loaded once per Ray worker); what it buys is more machines.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from anytalker.local_prefect import free_port, start_server
from anytalker.local_ray import LOOPBACK_ENV, ray_head

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"
DEFAULT = ["PC-AVS__Input_00098.mp4", "PC-AVS__Audio_Source_00015.mp4", "video-retalking__face_2.mp4",
           "LivePortrait__d3.mp4"]  # fmt: skip


def curate(videos: list[Path], work: Path, config: Path, env: dict[str, str]) -> tuple[float, dict]:
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "anytalker", "curate", *map(str, videos), "-w", str(work), "--config", str(config)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"curate failed:\n{done.stderr[-3000:]}")
    report = subprocess.run([sys.executable, "-m", "anytalker", "report", str(work), "--json"], env=env,
                            capture_output=True, text=True, check=True)  # fmt: skip
    return seconds, verdict_table(json.loads(report.stdout)["items"])


def verdict_table(items: list[dict]) -> dict[tuple[str, float | None], str]:
    """(source file name, clip start) -> the clip's reason, or "accepted", from report items."""
    return {(Path(i["source"]).name, i["start"]): i["reason"] or i["verdict"] for i in items}


def footage_seconds(videos: list[Path]) -> float:
    total = 0.0
    for v in videos:
        out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(v)],
                             capture_output=True, text=True, check=True)  # fmt: skip
        total += float(out.stdout.strip())
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="*", type=Path)
    parser.add_argument("--ray-cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--sources-per-task", type=int, default=8, help="cluster.sources_per_task of both runs")
    args = parser.parse_args()
    videos = args.videos or [SHARED / name for name in DEFAULT]
    footage = footage_seconds(videos)
    with tempfile.TemporaryDirectory(prefix="rb", dir="/tmp") as tmp, ray_head(args.ray_cpus) as (address, _):
        root = Path(tmp)
        with start_server(root / "prefect", free_port(0)) as server:
            env = server.env(LOOPBACK_ENV)
            env.pop("RAY_ADDRESS", None)
            local_cfg, ray_cfg = root / "local.yaml", root / "ray.yaml"
            batch = f"sources_per_task: {args.sources_per_task}"
            local_cfg.write_text(f"workers: {args.ray_cpus}\ncluster: {{{batch}}}\n")
            ray_cfg.write_text(f"workers: {args.ray_cpus}\ncluster: {{ray_address: '{address}', {batch}}}\n")
            local_s, local_v = curate(videos, root / "local", local_cfg, env)
            ray_s, ray_v = curate(videos, root / "on-ray", ray_cfg, env)
    print(f"{len(videos)} videos, {footage:.1f} s of footage; {args.ray_cpus} CPUs for either runner; "
          f"at most {args.sources_per_task} sources per task run")  # fmt: skip
    print(f"local thread pool: {local_s:7.1f} s  ({footage / local_s:.2f} s of footage per s)")
    print(f"Ray (loopback):    {ray_s:7.1f} s  ({footage / ray_s:.2f} s of footage per s)")
    print(f"ratio Ray / local: {ray_s / local_s:.2f}x")
    print(f"same verdicts: {local_v == ray_v} ({sorted(set(local_v.values()))})")


if __name__ == "__main__":
    main()
