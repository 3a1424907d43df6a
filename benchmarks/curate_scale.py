"""The curate flow on thousands of small sources: what orchestration costs per source, how the
Prefect database and the catalog grow, and what that means at a million sources.

    .venv/bin/python benchmarks/curate_scale.py [--sources 2000] [--bare 200] [--workers 2] [--baseline REV]

Makes SOURCES distinct short videos (4 s: one shot, one clip) (one ffmpeg encode, then a stream copy per source with
its own metadata, so every file has its own hash), starts a local Prefect server, and runs the
curate flow on the folder with `analyze: false` (the analysis per clip is what
benchmarks/analyze.py and curate_e2e.py measure; here each source costs little, so what the
flow adds stands out). Then the same per-source work (acquire + curate_source) on the first
BARE sources in a plain thread pool, without Prefect or the catalog; then the flow again on the
same folder (every source skipped as done). Prints time per source for each, the orchestration
overhead per source (flow minus plain work), rows and bytes per source in Prefect's database and
in the catalog, the time of the end-of-run report, and all of it extrapolated to 1 M sources.

Each flow runs in a process of its own, which samples its resident memory: how much the flow
process grows per source while it records sources (the fixed cost of the run's end kept apart),
and when the first and the last source reached the catalog. With --baseline, REV's flow (a git
worktree) runs the same sources first, on the same server, for a before/after of those figures
within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from anytalker.local_prefect import start_server

MILLION = 1_000_000
REPO = Path(__file__).resolve().parents[1]

FLOW_RUN = r"""
import json, os, sys, threading, time
from pathlib import Path

def rss():
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")

from flows.curate import curate

before = rss()
samples = []  # (seconds into the run, resident bytes)
stop = threading.Event()

def sample():
    while not stop.wait(0.2):
        samples.append((round(time.time() - started, 2), rss()))

started = time.time()
threading.Thread(target=sample, daemon=True).start()
result = curate([sys.argv[1]], sys.argv[2], sys.argv[3])
seconds = time.time() - started
stop.set()
samples.append((seconds, rss()))
print("RESULT " + json.dumps({"started": started, "seconds": seconds, "rss_before": before, "samples": samples,
                              "counts": result["counts"], "run": result["run"]}))
"""


def make_sources(folder: Path, n: int, seconds: float, workers: int) -> None:
    folder.mkdir(parents=True)
    base = folder.parent / "base.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=s=320x240:r=25:d={seconds:g}", "-f", "lavfi",
                    "-i", f"sine=f=440:r=16000:d={seconds:g}", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-shortest", str(base)], check=True)  # fmt: skip

    def copy(i: int) -> None:
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(base), "-c", "copy", "-metadata", f"comment=source {i}",
                        str(folder / f"s{i:07d}.mp4")], check=True)  # fmt: skip

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(copy, range(n)))


def table_rows(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {name: conn.execute(f'SELECT COUNT(*) FROM "{name}"').fetchone()[0] for name in names}


def db_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


def run_flow(tree: Path, sources: Path, work: Path, config: Path) -> dict:
    """The curate flow of the code in `tree` on `sources`, in a process of its own (FLOW_RUN): its
    wall time, counts and run statistics, when its first and last sources were recorded in the
    catalog (seconds into the run), and its resident memory while it recorded them (`memory`)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", FLOW_RUN, str(sources), str(work), str(config)], cwd=tree, env=env,
                          capture_output=True, text=True)  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"the flow run in {tree} failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT ") :])
    with sqlite3.connect(work / "catalog.sqlite") as db:
        stamps = [row[0] for row in db.execute("SELECT updated_at FROM sources ORDER BY updated_at")]
    recorded = [datetime.fromisoformat(stamp).timestamp() - result["started"] for stamp in stamps]
    result["recorded"] = (recorded[0], recorded[-1]) if recorded else (float("nan"), float("nan"))
    result["memory"] = memory(result, recorded)
    return result


def memory(run: dict, recorded: list[float]) -> dict:
    """The flow process's resident memory: before the run, when half its sources were recorded,
    when the last one was, at the end of the run and at its peak; and the growth per source
    between the half and the last (what a longer run adds per source).

    The end of the run (the report: its imports, histograms and contact sheet) is a fixed cost
    and is kept out of the growth. An earlier version took the growth from the run's last tenth,
    end included, so 50-60 MB of the end read as 45-51 kB per source on 2,000 sources."""
    samples = run["samples"]
    at = lambda t: min(samples, key=lambda s: abs(s[0] - t))[1]  # noqa: E731
    if not recorded:
        return {"before": run["rss_before"], "peak": max(r for _, r in samples)}
    half, last = at(recorded[len(recorded) // 2]), at(recorded[-1])
    between = len(recorded) - 1 - len(recorded) // 2
    return {"before": run["rss_before"], "half": half, "last": last, "end": samples[-1][1],
            "peak": max(r for _, r in samples), "per_source": (last - half) / max(1, between)}  # fmt: skip


def describe_flow(name: str, run: dict, n: int) -> None:
    first, last = run["recorded"]
    peak = run["run"].get("in_flight_peak", "all of them")
    print(f"{name}: {run['seconds']:.1f} s, {1000 * run['seconds'] / n:.0f} ms per source; sources recorded from "
          f"{first:.0f} s to {last:.0f} s into the run; source task runs submitted and not yet recorded, at most: {peak}")
    mem = {k: v / 1e6 for k, v in run["memory"].items()}
    if "half" in mem:
        print(f"  flow process: {mem['before']:.0f} MB before, {mem['half']:.0f} MB when half the sources were "
              f"recorded, {mem['last']:.0f} MB at the last ({1e3 * mem['per_source']:.1f} kB per source between), "
              f"{mem['end']:.0f} MB after the end of the run (+{mem['end'] - mem['last']:.0f} MB, a fixed cost), peak "
              f"{mem['peak']:.0f} MB")  # fmt: skip


def bare(files: list[Path], workdir: Path, workers: int) -> float:
    """acquire + curate_source per file in a plain thread pool: the work without its orchestration."""
    from tasks.config import CurateConfig
    from tasks.curation.ingest import acquire, expand_inputs
    from tasks.curation.source import curate_source

    config = CurateConfig(analyze=False)
    items = expand_inputs([str(f) for f in files], config.ingest)

    def one(item) -> None:
        curate_source(acquire(item, workdir, config.ingest), workdir, config)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, items))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sources", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=4.0, help="Length of each source (one shot, one clip).")
    parser.add_argument("--bare", type=int, default=200, help="Sources run without Prefect, for the plain cost.")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--per-task", type=int, default=8, help="cluster.sources_per_task (1: a task run per source).")
    parser.add_argument("--baseline", help="A git revision whose curate flow runs the same sources first.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scale", dir="/tmp") as tmp, start_server(Path(tmp) / "prefect") as server:
        root = Path(tmp)
        os.environ.update(server.env())
        prefect_db = root / "prefect" / "prefect.db"
        sources = root / "sources"
        started = time.perf_counter()
        make_sources(sources, args.sources, args.seconds, args.workers)
        print(f"made {args.sources} {args.seconds:g}-second sources in {time.perf_counter() - started:.0f} s")
        from tasks.catalog import Catalog

        config = root / "scale.yaml"
        config.write_text(f"analyze: false\nworkers: {args.workers}\ncluster: {{sources_per_task: {args.per_task}}}\n")
        baseline = None
        if args.baseline:
            tree = root / f"tree-{args.baseline}"
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), args.baseline],
                           check=True, capture_output=True)  # fmt: skip
            try:
                baseline = run_flow(tree, sources, root / "baseline", config)
            finally:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)
        before_rows, before_bytes = table_rows(prefect_db), db_bytes(prefect_db)
        work = root / "work"
        result = run_flow(REPO, sources, work, config)
        flow_s = result["seconds"]
        after_rows, after_bytes = table_rows(prefect_db), db_bytes(prefect_db)
        started = time.perf_counter()
        with Catalog(work) as catalog:
            counts = catalog.counts()
        counts_s = time.perf_counter() - started
        started = time.perf_counter()
        with Catalog(work) as catalog:
            report = catalog.report()
        report_s = time.perf_counter() - started
        again = run_flow(REPO, sources, work, config)
        rerun_s = again["seconds"]
        plain_s = bare(sorted(sources.glob("*.mp4"))[: args.bare], root / "bare", args.workers)
        catalog_bytes = db_bytes(work / "catalog.sqlite")

    n = args.sources
    flow_per, plain_per, rerun_per = flow_s / n, plain_s / args.bare, rerun_s / n
    overhead = flow_per - plain_per
    grown = {t: after_rows[t] - before_rows.get(t, 0) for t in after_rows if after_rows[t] != before_rows.get(t, 0)}
    print(f"{n} sources, {args.workers} workers, up to {args.per_task} sources per task run: inputs {counts['inputs']}, clips {counts['clips']}, "
          f"accepted {counts['accepted']} (inputs in = accepted + rejected: {counts['items'] == counts['accepted'] + counts['rejected']})")  # fmt: skip
    if baseline is not None:
        describe_flow(f"baseline {args.baseline}", baseline, n)
    describe_flow("now", result, n)
    print(f"plain: {plain_s:.1f} s for {args.bare} sources, {1000 * plain_per:.0f} ms per source (same work, no Prefect)")
    print(f"orchestration overhead: {1000 * overhead:.0f} ms per source of wall "
          f"({1000 * overhead * args.workers:.0f} ms of worker time), {flow_per / plain_per:.2f}x the plain work")  # fmt: skip
    print(f"rerun (every source done): {rerun_s:.1f} s, {1000 * rerun_per:.1f} ms per source; "
          f"new sources {again['run']['new_sources']}")  # fmt: skip
    print(f"phases of the first run: {json.dumps(result['run'].get('phase_seconds', {}))}")
    print(f"catalog counts (what the flow's end reads, in SQL): {counts_s:.2f} s; the whole report of "
          f"{len(report['items'])} items (`anytalker report`): {report_s:.2f} s")  # fmt: skip
    print(f"Prefect database: +{(after_bytes - before_bytes) / 1e6:.1f} MB, {(after_bytes - before_bytes) / n / 1e3:.1f} kB "
          f"per source; rows per source: " + ", ".join(f"{t} {v / n:.2f}" for t, v in sorted(grown.items())))  # fmt: skip
    print(f"catalog: {catalog_bytes / 1e6:.1f} MB, {catalog_bytes / n / 1e3:.2f} kB per source")
    scale = MILLION / n
    print(f"extrapolated to 1 M sources (linear): Prefect database {(after_bytes - before_bytes) * scale / 1e9:.1f} GB, "
          f"catalog {catalog_bytes * scale / 1e9:.2f} GB, orchestration {overhead * MILLION / 3600:.0f} wall-hours at "
          f"{args.workers} workers, a rerun that skips everything {rerun_per * MILLION / 3600:.1f} h, "
          f"the flow's end-of-run counts {counts_s * scale:.0f} s, the flow process's growth if it went on "
          f"linearly {result['memory'].get('per_source', float('nan')) * MILLION / 1e9:.1f} GB (it levels off once the "
          f"catalog's SQLite page cache is full: README, 'Curation at scale')"
          + ("" if baseline is None else f" (baseline {baseline['memory'].get('per_source', float('nan')) * MILLION / 1e9:.1f} GB)"))  # fmt: skip


if __name__ == "__main__":
    main()
