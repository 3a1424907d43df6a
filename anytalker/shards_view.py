"""`anytalker shards inspect`: a shard set's summary in the terminal, and a preview image."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from shards.preview import first_samples, preview_png
from shards.writer import read_index, shard_urls


def print_shard_set(target: str, preview: Path | None) -> Path:
    """Print splits, kinds, identity counts and shards; write the preview PNG (default: DIR/preview.png
    for a local set, ./shards-preview.png otherwise). Returns the preview's path."""
    index = read_index(target)
    console = Console()
    table = Table(title=f"shard set {target} (schema {index['schema']})")
    for column in ("split", "shards", "samples", "hours", "kinds", "N identities: samples", "people"):
        table.add_column(column)
    for split, info in index["splits"].items():
        table.add_row(
            split, str(len(info["shards"])), str(info["samples"]), f"{info['hours']:.4f}",
            ", ".join(f"{k} {v}" for k, v in sorted(info["kinds"].items())),
            ", ".join(f"{k}: {v}" for k, v in info["n_identities"].items()), str(len(info["identities"])),
        )  # fmt: skip
    console.print(table)
    if index.get("failed"):
        console.print(f"[red]{len(index['failed'])} samples failed to render[/red] (index.json lists them)")
    urls = [u for split in index["splits"] for u in shard_urls(target, split)]
    if preview is None:
        local = Path(target)
        preview = local / "preview.png" if local.is_dir() else Path("shards-preview.png")
    preview.write_bytes(preview_png(first_samples(urls)))
    console.print(f"preview: {preview}")
    return preview
