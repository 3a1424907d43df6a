"""What a curate run shows on the dashboard: the funnel table and a markdown summary.

Keys are stable, so the Prefect UI keeps one history per artifact across runs.
"""

from __future__ import annotations

from prefect.artifacts import create_markdown_artifact, create_table_artifact


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
        f"{run['skipped_done']} skipped as already done.",
    ]
    if counts["rejected_by_reason"]:
        lines += ["", "Rejections: " + ", ".join(f"{r} {n}" for r, n in counts["rejected_by_reason"].items()) + "."]
    return "\n".join(lines)


def publish_curation_artifacts(counts: dict, run: dict, workdir: str) -> None:
    create_table_artifact(key="curation-funnel", table=funnel_rows(counts), description="Curation funnel")
    create_markdown_artifact(key="curation-summary", markdown=summary_markdown(counts, run, workdir))
