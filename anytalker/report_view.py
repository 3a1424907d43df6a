"""The human-readable report: a rich table of items and a counts line."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

SHOWN_METRICS = (
    "duration_s", "face_count_max", "face_size_px", "yaw_deg", "speech_ratio", "num_speakers", "sync_offset_frames",
    "sync_confidence", "sharpness", "brightness", "motion", "detail",
)  # fmt: skip


def print_report(data: dict, console: Console | None = None) -> None:
    console = console or Console(width=None if sys.stdout.isatty() else 200)
    table = Table(title="Curation report", show_lines=False)
    for column in ("source", "clip", "start", "end", "verdict", "reason", "metrics"):
        table.add_column(column, overflow="fold")
    for item in data["items"]:
        metrics = item["metrics"]
        shown = ", ".join(f"{k}={metrics[k]}" for k in SHOWN_METRICS if metrics.get(k) not in (None, ""))
        style = "green" if item["verdict"] == "accepted" else "red"
        table.add_row(
            item["source"],
            item["clip"] or "-",
            "-" if item["start"] is None else f"{item['start']:.2f}",
            "-" if item["end"] is None else f"{item['end']:.2f}",
            f"[{style}]{item['verdict']}[/{style}]",
            item["reason"] or "",
            shown,
        )
    console.print(table)
    c = data["counts"]
    console.print(
        f"inputs {c['inputs']}  sources {c['sources']}  clips {c['clips']}  items {c['items']}  "
        f"accepted {c['accepted']}  rejected {c['rejected']}  {c['rejected_by_reason']}"
    )
