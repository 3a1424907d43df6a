"""What a curate run shows on the dashboard: the funnel table and a markdown summary.

Keys are stable, so the Prefect UI keeps one history per artifact across runs.
"""

from __future__ import annotations

import base64

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.catalog import Catalog
from tasks.curation.report_images import CONTACT_SHEET_PER_VERDICT, HISTOGRAM_KEYS, contact_sheet, score_histograms
from tasks.workdir import reports_dir


def funnel_rows(counts: dict) -> list[dict]:
    """Items in, rejected per reason, accepted: the rows of the funnel table."""
    rows = [{"stage": "items (clips + inputs rejected before splitting)", "count": counts["items"]}]
    rows += [{"stage": f"rejected: {reason}", "count": n} for reason, n in counts["rejected_by_reason"].items()]
    rows.append({"stage": "accepted", "count": counts["accepted"]})
    return rows


def summary_markdown(counts: dict, run: dict, workdir: str) -> str:
    lines = [
        "# Curation summary",
        "",
        f"Work directory: `{workdir}` (catalog: `{workdir}/catalog.sqlite`)",
        "",
        "| | count |",
        "|---|---:|",
        f"| inputs in the catalog | {counts['inputs']} |",
        f"| sources | {counts['sources']} |",
        f"| clips | {counts['clips']} |",
        f"| accepted | {counts['accepted']} ({counts['accepted_hours'] * 60:.1f} min) |",
        f"| rejected | {counts['rejected']} |",
        "",
        f"This run: {run['inputs']} inputs, {run['new_sources']} new sources, {run['new_clips']} new clips, "
        f"{run['skipped_done']} skipped as already done ({run.get('skipped_fetched', 0)} of them URLs fetched before, "
        f"not downloaded again).",
    ]
    if run.get("listed"):
        lines += ["", f"Playlists, channels and pages listed {run['listed']} entries."]
    if run.get("disk_budget"):
        lines += ["", f"**{run['disk_budget']} inputs were not downloaded: free disk space is under ingest.min_free_gb.** "
                      "They are retried by the next run."]  # fmt: skip
    spent = run.get("stage_seconds") or {}
    if spent:
        total = sum(spent.values())
        shares = ", ".join(f"{k} {v / total:.0%}" for k, v in sorted(spent.items(), key=lambda kv: -kv[1]))
        lines += ["", f"Time by stage: {total:.1f} s summed over workers ({shares}); "
                      f"{run.get('written_clips', 0)} of {run['new_clips']} new clips encoded (the kept ones)."]
    if counts["rejected_by_reason"]:
        lines += ["", "Rejections: " + ", ".join(f"{r} {n}" for r, n in counts["rejected_by_reason"].items()) + "."]
    return "\n".join(lines)


def source_rows(sources: list[dict]) -> list[dict]:
    """One row per source: where it came from and what it gave."""
    rows = []
    for s in sources:
        p = s["provenance"]
        rows.append({
            "source": s["source_id"][:12], "input": s["input"], "extractor": p.get("extractor", ""),
            "title": p.get("title", ""), "uploader": p.get("uploader") or p.get("channel", ""),
            "uploaded": p.get("upload_date", ""), "licence": p.get("license", ""),
            "section": "{:g}-{:g}".format(*p["section"]) if p.get("section") else "",
            "clips accepted": f"{s['accepted']}/{s['clips']}", "fetched": p.get("fetched_at", ""),
        })  # fmt: skip
    return rows


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    import io

    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _image_markdown(title: str, png: bytes) -> str:
    """Markdown with the PNG inline, so the Prefect UI shows it without a file server."""
    return f"# {title}\n\n![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"


MAX_SOURCE_ROWS = 1000  # an artifact is one database row: a million-row table would be one huge row per run


def publish_curation_artifacts(catalog: Catalog, run: dict, workdir: str) -> dict:
    """Funnel, summary, sources, score histograms and contact sheet; the PNGs are also kept in
    WORKDIR/reports. Each reads a bounded view of the catalog (counts in SQL, one number per clip
    for the histograms, the first sources and items), so a catalog of a million sources costs no
    more memory than the pictures. Returns the counts."""
    counts = catalog.counts()
    create_table_artifact(key="curation-funnel", table=funnel_rows(counts), description="Curation funnel")
    create_markdown_artifact(key="curation-summary", markdown=summary_markdown(counts, run, workdir),
                             description="Clips accepted and rejected; this run's new work")  # fmt: skip
    if counts["sources"]:
        rows = source_rows(catalog.sources(limit=MAX_SOURCE_ROWS))
        shown = f"{MAX_SOURCE_ROWS} of {counts['sources']} sources; `anytalker report {workdir}` lists all" \
            if counts["sources"] > MAX_SOURCE_ROWS else "Every source"  # fmt: skip
        create_table_artifact(key="curation-sources", table=rows,
                              description=f"{shown}, with provenance (for audits and takedowns)")  # fmt: skip
    reports = reports_dir(workdir)
    reports.mkdir(parents=True, exist_ok=True)
    sample = [i.as_dict() for i in catalog.items(per_verdict=CONTACT_SHEET_PER_VERDICT)]
    for key, title, png in (
        ("curation-histograms", "Scores by verdict", score_histograms(catalog.scores(HISTOGRAM_KEYS))),
        ("curation-contact-sheet", "Accepted and rejected clips", contact_sheet(sample)),
    ):
        (reports / f"{key}.png").write_bytes(png)
        create_markdown_artifact(key=key, markdown=_image_markdown(title, png), description=title)
    return counts


def shard_rows(index: dict) -> list[dict]:
    """One row per shard: what the shard table artifact shows."""
    return [
        {"split": split, "shard": s["shard"], "samples": s["samples"], "MB": round(s["bytes"] / 1e6, 1),
         "sha256": s["sha256"][:16]}
        for split, info in index["splits"].items()
        for s in info["shards"]
    ]  # fmt: skip


def shard_summary_markdown(index: dict, out: str) -> str:
    lines = [f"# Shard set `{out}`", "", "| split | samples | hours | kinds | identities (N: samples) | people |",
             "|---|---:|---:|---|---|---:|"]  # fmt: skip
    for split, info in index["splits"].items():
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(info["kinds"].items()))
        n_ids = ", ".join(f"{k}: {v}" for k, v in info["n_identities"].items())
        lines.append(f"| {split} | {info['samples']} | {info['hours']:.3f} | {kinds} | {n_ids} | {len(info['identities'])} |")
    if index.get("failed"):
        lines += ["", f"Failed samples: {len(index['failed'])} (see index.json)."]
    return "\n".join(lines)


def publish_shard_artifacts(index: dict, out: str, workdir: str) -> None:
    """Shard table, summary and a preview of samples with their masks; the PNG also in WORKDIR/reports."""
    from shards.preview import first_samples, preview_png
    from shards.writer import shard_urls

    create_table_artifact(key="shards-table", table=shard_rows(index), description="Shards written")
    create_markdown_artifact(key="shards-summary", markdown=shard_summary_markdown(index, out),
                             description="Samples, hours, kinds and people per split")  # fmt: skip
    urls = [u for split in index["splits"] for u in shard_urls(out, split)]
    png = preview_png(first_samples(urls))
    reports = reports_dir(workdir)
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "shards-preview.png").write_bytes(png)
    create_markdown_artifact(key="shards-preview", markdown=_image_markdown("Samples with their face masks", png),
                             description="Preview frames with masks")  # fmt: skip
