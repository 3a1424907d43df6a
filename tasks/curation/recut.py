"""`anytalker recut`: apply changed verdict thresholds to the catalog and cut the clips they now keep.

The curate flow encodes only the clips analysis keeps; a rejected clip keeps its time range,
metrics and verdict. After a threshold changes, every analysed clip is judged again from its
stored metrics (no model runs), and a clip that is now kept but has no file is cut from its
source, which must still be on disk (`ingest.keep_sources: true`, the default). A clip whose
analysis stopped early (cheap checks first) keeps its verdict unless a check it did pass now
rejects it: thresholds on stages it never reached need `every_metric: true` and a new analysis.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tasks.catalog import Catalog
from tasks.config import CurateConfig
from tasks.curation.standardize import standardize
from tasks.curation.verdict import early_rejection, is_written, judge, sync_is_confident
from tasks.records import ClipPlan, Probe, Reason


@dataclass
class RecutSummary:
    judged: int = 0
    changed: dict[str, int] = field(default_factory=dict)  # "old -> new" verdicts, counted
    written: int = 0
    unreached: int = 0  # now possibly accepted, but stages they never reached decide: left as they were
    source_missing: list[str] = field(default_factory=list)  # sources gone, whose kept clips could not be cut
    failed: list[str] = field(default_factory=list)  # clip id: why its cut failed


def rejudge(metrics: dict, config: CurateConfig) -> Reason | None | str:
    """The verdict under `config` from stored metrics, or "unreached" when a stage the clip never
    reached (the analysis stopped early) would decide it."""
    try:
        return judge(metrics, config.verdict)
    except KeyError:
        return early_rejection(metrics, config.verdict) or "unreached"


def recut(workdir: Path, config: CurateConfig) -> RecutSummary:
    """Judge every analysed clip again under `config` and write the standard clips it now keeps."""
    summary = RecutSummary()
    to_cut: dict[str, list[tuple[ClipPlan, dict]]] = {}
    with Catalog(workdir) as catalog:
        sources = {s["source_id"]: s for s in catalog.split_sources()}
        offsets = {sid: (facts.get("section") or [0.0])[0] for sid, facts in catalog.provenance().items()}
        for row in catalog.analysed_clips(("accepted", "rejected")):
            metrics = json.loads(row["metrics"])
            if row["reason"] in (Reason.DECODE_ERROR, Reason.INTERNAL_ERROR, Reason.ENCODE_ERROR):
                continue  # no verdict of analysis to change
            summary.judged += 1
            reason = rejudge(metrics, config)
            if reason == "unreached":
                summary.unreached += 1
                continue
            if reason is None and metrics.get("sync_offset_frames") and sync_is_confident(metrics, config.verdict):
                metrics["sync_shifted_frames"] = metrics["sync_offset_frames"]
            old = row["reason"] or "accepted"
            if old != (reason or "accepted"):
                key = f"{old} -> {reason or 'accepted'}"
                summary.changed[key] = summary.changed.get(key, 0) + 1
                catalog.record_analysis(row["clip_id"], metrics, reason)
            on_disk = bool(row["path"]) and Path(row["path"]).is_file()
            if is_written(reason, config.standardize.write_rejected) and not on_disk:
                offset = offsets.get(row["source_id"], 0.0)
                shift = int(metrics.get("sync_shifted_frames", 0))  # applied by the cut
                plan = ClipPlan(row["clip_id"], 0, 0, row["start_s"], row["end_s"], offset_s=offset,
                                audio_shift_frames=shift)
                to_cut.setdefault(row["source_id"], []).append((plan, metrics))
        for source_id, wanted in to_cut.items():
            source = sources.get(source_id)
            if source is None or not Path(source["path"]).is_file():
                summary.source_missing.append(source["input"] if source else source_id)
                continue
            facts = Probe(**json.loads(source["probe"]))
            plans = [plan for plan, _ in wanted]
            for (plan, metrics), result in zip(wanted, standardize(source["path"], source_id, facts, plans, workdir,
                                                                   config.standardize), strict=True):  # fmt: skip
                if result.path is None:
                    summary.failed.append(f"{plan.clip_id}: {result.detail}")
                    continue
                catalog.record_clip_path(plan.clip_id, result.path)
                summary.written += 1
    return summary
