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
    _print_sources(data.get("sources", []), data.get("listings", []), console)
    c = data["counts"]
    console.print(
        f"inputs {c['inputs']}  sources {c['sources']}  clips {c['clips']}  items {c['items']}  "
        f"accepted {c['accepted']}  rejected {c['rejected']}  {c['rejected_by_reason']}"
    )


def _print_sources(sources: list[dict], listings: list[dict], console: Console) -> None:
    """Where each source came from (for audits and takedowns), and what each playlist listed."""
    if not sources:
        return
    table = Table(title="Sources and provenance", show_lines=False)
    for column in ("source id", "input", "clips", "title / uploader", "uploaded", "licence", "section", "fetched"):
        table.add_column(column, overflow="fold")
    for s in sources:
        p = s["provenance"]
        who = " / ".join(str(p[k]) for k in ("title", "uploader") if p.get(k)) or p.get("extractor", "")
        section = "{:g}-{:g} s".format(*p["section"]) if p.get("section") else "whole"
        table.add_row(s["source_id"][:12], s["input"], f"{s['accepted']}/{s['clips']}", who,
                      p.get("upload_date", ""), p.get("license", ""), section, p.get("fetched_at", ""))  # fmt: skip
    console.print(table)
    for listing in listings:
        left = ", ".join(f"{k} {v}" for k, v in listing["left_out"].items()) or "none"
        console.print(
            f"listing {listing['url']} ({listing['title']}): listed {listing['listed']}, taken {listing['taken']}, "
            f"fetched before {listing['archived']}, left out: {left}"
        )
