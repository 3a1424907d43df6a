"""The curate flow on thousands of small sources: what orchestration costs per source, how the
Prefect database and the catalog grow, and what that means at a million sources.

    .venv/bin/python benchmarks/curate_scale.py [--sources 2000] [--bare 200] [--workers 2]

Makes SOURCES distinct short videos (4 s: one shot, one clip) (one ffmpeg encode, then a stream copy per source with
its own metadata, so every file has its own hash), starts a local Prefect server, and runs the
curate flow on the folder with `analyze: false` (the analysis per clip is what
benchmarks/analyze.py and curate_e2e.py measure; here each source costs little, so what the
flow adds stands out). Then the same per-source work (acquire + curate_source) on the first
BARE sources in a plain thread pool, without Prefect or the catalog; then the flow again on the
same folder (every source skipped as done). Prints time per source for each, the orchestration
overhead per source (flow minus plain work), rows and bytes per source in Prefect's database and
in the catalog, the time of the end-of-run report, and all of it extrapolated to 1 M sources.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from anytalker.local_prefect import start_server

MILLION = 1_000_000


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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scale", dir="/tmp") as tmp, start_server(Path(tmp) / "prefect") as server:
        root = Path(tmp)
        os.environ.update(server.env())
        prefect_db = root / "prefect" / "prefect.db"
        started = time.perf_counter()
        make_sources(root / "sources", args.sources, args.seconds, args.workers)
        print(f"made {args.sources} {args.seconds:g}-second sources in {time.perf_counter() - started:.0f} s")
        from flows.curate import curate
        from tasks.catalog import Catalog

        config = root / "scale.yaml"
        config.write_text(f"analyze: false\nworkers: {args.workers}\ncluster: {{sources_per_task: {args.per_task}}}\n")
        before_rows, before_bytes = table_rows(prefect_db), db_bytes(prefect_db)
        work = root / "work"
        started = time.perf_counter()
        result = curate([str(root / "sources")], str(work), str(config))
        flow_s = time.perf_counter() - started
        after_rows, after_bytes = table_rows(prefect_db), db_bytes(prefect_db)
        started = time.perf_counter()
        with Catalog(work) as catalog:
            report = catalog.report()
        report_s = time.perf_counter() - started
        started = time.perf_counter()
        again = curate([str(root / "sources")], str(work), str(config))
        rerun_s = time.perf_counter() - started
        plain_s = bare(sorted((root / "sources").glob("*.mp4"))[: args.bare], root / "bare", args.workers)
        catalog_bytes = db_bytes(work / "catalog.sqlite")

    n = args.sources
    counts = result["counts"]
    flow_per, plain_per, rerun_per = flow_s / n, plain_s / args.bare, rerun_s / n
    overhead = flow_per - plain_per
    grown = {t: after_rows[t] - before_rows.get(t, 0) for t in after_rows if after_rows[t] != before_rows.get(t, 0)}
    print(f"{n} sources, {args.workers} workers, up to {args.per_task} sources per task run: inputs {counts['inputs']}, clips {counts['clips']}, "
          f"accepted {counts['accepted']} (inputs in = accepted + rejected: {counts['items'] == counts['accepted'] + counts['rejected']})")  # fmt: skip
    print(f"flow:  {flow_s:.1f} s, {1000 * flow_per:.0f} ms per source (wall; {args.workers} workers)")
    print(f"plain: {plain_s:.1f} s for {args.bare} sources, {1000 * plain_per:.0f} ms per source (same work, no Prefect)")
    print(f"orchestration overhead: {1000 * overhead:.0f} ms per source of wall "
          f"({1000 * overhead * args.workers:.0f} ms of worker time), {flow_per / plain_per:.2f}x the plain work")  # fmt: skip
    print(f"rerun (every source done): {rerun_s:.1f} s, {1000 * rerun_per:.1f} ms per source; "
          f"new sources {again['run']['new_sources']}")  # fmt: skip
    print(f"phases of the first run: {json.dumps(result['run'].get('phase_seconds', {}))}")
    print(f"catalog report of {len(report['items'])} items: {report_s:.2f} s")
    print(f"Prefect database: +{(after_bytes - before_bytes) / 1e6:.1f} MB, {(after_bytes - before_bytes) / n / 1e3:.1f} kB "
          f"per source; rows per source: " + ", ".join(f"{t} {v / n:.2f}" for t, v in sorted(grown.items())))  # fmt: skip
    print(f"catalog: {catalog_bytes / 1e6:.1f} MB, {catalog_bytes / n / 1e3:.2f} kB per source")
    scale = MILLION / n
    print(f"extrapolated to 1 M sources (linear): Prefect database {(after_bytes - before_bytes) * scale / 1e9:.1f} GB, "
          f"catalog {catalog_bytes * scale / 1e9:.2f} GB, orchestration {overhead * MILLION / 3600:.0f} wall-hours at "
          f"{args.workers} workers, a rerun that skips everything {rerun_per * MILLION / 3600:.1f} h, "
          f"the end-of-run report {report_s * scale / 60:.0f} min and {len(report['items']) * scale / 1e6:.1f} M items in memory")  # fmt: skip


if __name__ == "__main__":
    main()
