"""The promotion gate: a run becomes the current model only when it earns it.

A run is promoted when its primary metric is measured and beats the incumbent's by more than
`gate.min_gain`, and no guard metric regresses beyond its tolerance (a guard the incumbent has
and the candidate lacks counts as a regression); the first run is promoted when its primary
metric is measured. The promoted model is frozen as RUN/releases/step-N (hard links of
RUN/model, and promotion.json saying why) and `RUNS/best` is a symlink to it, switched with one
rename (never missing, never half-made); every decision, won or lost, is stored with its reason.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tasks.evaluation.scoring import HIGHER_IS_BETTER, GateConfig

BEST = "best"


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reason: str
    incumbent: str | None


def _better(metric: str, a: float, b: float) -> float:
    """How much better a is than b (positive: better), whichever way the metric points."""
    return (a - b) if HIGHER_IS_BETTER.get(metric, True) else (b - a)


def decide(candidate: dict[str, float], incumbent: dict[str, float] | None, gate: GateConfig,
           incumbent_name: str | None = None) -> Decision:  # fmt: skip
    p = gate.primary
    if p not in candidate:
        return Decision(False, f"{p} was not measured (see the evaluation's notes); nothing to compare", incumbent_name)
    if incumbent is None:
        return Decision(True, f"first run with a measured {p} ({candidate[p]:g})", None)
    if p not in incumbent:
        return Decision(True, f"{p} {candidate[p]:g}; the incumbent has none", incumbent_name)
    gain = _better(p, candidate[p], incumbent[p])
    if gain <= gate.min_gain:
        return Decision(False, f"{p} {candidate[p]:g} does not beat the incumbent's {incumbent[p]:g}"
                               f" by more than {gate.min_gain:g}", incumbent_name)  # fmt: skip
    for metric, tolerance in sorted(gate.guards.items()):
        if metric not in incumbent:
            continue
        if metric not in candidate:
            return Decision(False, f"guard {metric} was not measured (incumbent {incumbent[metric]:g})", incumbent_name)
        drop = -_better(metric, candidate[metric], incumbent[metric])
        if drop > tolerance:
            return Decision(False, f"{p} improved ({incumbent[p]:g} -> {candidate[p]:g}) but guard {metric} regressed "
                                   f"{incumbent[metric]:g} -> {candidate[metric]:g} (tolerance {tolerance:g})",
                            incumbent_name)  # fmt: skip
    return Decision(True, f"{p} {incumbent[p]:g} -> {candidate[p]:g}; guards within tolerance", incumbent_name)


def current_best(runs_root: str | Path) -> Path | None:
    """The release RUNS/best points to (RUN/releases/step-N), or None before any promotion."""
    link = Path(runs_root) / BEST
    return link.resolve() if link.is_symlink() else None


def incumbent_record(runs_root: str | Path) -> dict | None:
    """The promotion record of the current model: run, step, benchmark, reason, metrics."""
    best = current_best(runs_root)
    return json.loads((best / "promotion.json").read_text()) if best and (best / "promotion.json").is_file() else None


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # same file system: no copy, and a later retrain writes new files, not these
    except OSError:
        shutil.copy2(src, dst)


def switch_best(runs_root: str | Path, run: str | Path, step: int, record: dict) -> Path:
    """Freeze the run's model as RUN/releases/step-N (with promotion.json, the why) and point
    RUNS/best at it with one rename. The release is immutable: a resumed retrain that rewrites
    RUN/model does not change what RUNS/best serves."""
    root, run = Path(runs_root), Path(run).resolve()
    root.mkdir(parents=True, exist_ok=True)
    release = run / "releases" / f"step-{step:06d}"
    if not release.is_dir():
        part = release.with_name(f".{release.name}.{os.getpid()}.part")
        if part.exists():
            shutil.rmtree(part)
        part.mkdir(parents=True)
        if (run / "model").is_dir():
            shutil.copytree(run / "model", part / "model", copy_function=_link_or_copy)
        (part / "promotion.json").write_text(json.dumps(record, indent=2))
        os.replace(part, release)
    link = root / BEST
    staging = root / f".{BEST}.{os.getpid()}.part"
    if staging.is_symlink() or staging.exists():
        staging.unlink()
    staging.symlink_to(release, target_is_directory=True)
    os.replace(staging, link)
    return link
