"""The evaluate flow: generate a benchmark with a run's model, score it, store every figure, and
promote the run only when it beats the incumbent (tasks/evaluation/promotion.py).

Triggered by `anytalker.training.finished` (prefect.yaml). Layout it writes:

    RUN/eval/<benchmark>/step-<step>/inputs.json    the benchmark as a generate batch
    RUN/eval/<benchmark>/step-<step>/videos/        the generated videos (atomic, resumable)
    RUN/eval/<benchmark>/step-<step>/evaluation.json  every figure and note
    RUNS/evaluations.sqlite                         figures and decisions of every run
    RUNS/best -> RUN                                 the promoted run (one rename)

Artifacts: `evaluation` (this run's figures), `leaderboard` (every evaluated run by the primary
metric, the incumbent marked), `metrics-over-runs` (a plot of each metric over runs).
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.events import model_promoted
from flows.reporting import _image_markdown, figure_png
from tasks.evaluation.benchmark import generation_batch, read_benchmark
from tasks.evaluation.metric_store import MetricStore
from tasks.evaluation.promotion import Decision, current_best, decide, incumbent_record, switch_best
from tasks.evaluation.scoring import (
    HIGHER_IS_BETTER,
    EvaluationConfig,
    evaluate_folder,
    load_evaluation_config,
    to_json,
)


def leaderboard_rows(store: MetricStore, benchmark: str, primary: str, incumbent: dict | None) -> list[dict]:
    """Every evaluated run on `benchmark`, best primary metric first; the incumbent marked."""
    rows = []
    for run, step, bench in store.evaluations(benchmark):
        summary = store.summary(run, step, bench)
        current = bool(incumbent) and incumbent["run"] == run and int(incumbent["step"]) == step
        rows.append({"run": Path(run).name, "step": step, "incumbent": "yes" if current else ("real videos" if run == REFERENCE else ""),
                     **{m: summary.get(m, "") for m in sorted(HIGHER_IS_BETTER) if m in summary or m == primary}})  # fmt: skip
    sign = 1 if HIGHER_IS_BETTER.get(primary, True) else -1
    return sorted(rows, key=lambda r: -sign * r[primary] if isinstance(r.get(primary), float) else float("inf"))


def metrics_plot(store: MetricStore, benchmark: str) -> bytes:
    """Each metric's overall value per evaluation, in the order the runs were evaluated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    evaluations = store.evaluations(benchmark)
    summaries = [store.summary(*e) for e in evaluations]
    metrics = sorted({m for s in summaries for m in s})
    fig, axes = plt.subplots(max(1, len(metrics)), 1, figsize=(6, 1.8 * max(1, len(metrics))), dpi=100, squeeze=False)
    labels = [f"{Path(r).name}@{s}" for r, s, _ in evaluations]
    if not metrics:
        axes[0, 0].text(0.5, 0.5, "no metric measured yet (see the evaluation artifact's notes)", ha="center", va="center")
        axes[0, 0].set_axis_off()
    for ax, metric in zip(axes[:, 0], metrics, strict=False):
        xs = [i for i, s in enumerate(summaries) if metric in s]
        ax.plot(xs, [summaries[i][metric] for i in xs], marker="o", lw=1.2)
        ax.set_ylabel(metric, fontsize=7)
        ax.set_xticks(range(len(labels)), labels, fontsize=6, rotation=20)
        ax.grid(alpha=0.3)
    return figure_png(fig)


@task(name="score-benchmark", cache_policy=NO_CACHE)
def score_task(videos: str, benchmark: str, config: EvaluationConfig) -> dict:
    logger = get_run_logger()
    return evaluate_folder(Path(videos), Path(benchmark), config, progress=lambda p: logger.info("scored %s", p.name))


def gate_and_record(store: MetricStore, runs_root: Path, run: Path, step: int, bench_name: str,
                    config: EvaluationConfig) -> dict:  # fmt: skip
    """Decide against the incumbent, switch RUNS/best when the run wins, store the decision."""
    summary = store.summary(str(run), step, bench_name)
    record = incumbent_record(runs_root)
    switched = False
    if record and record["run"] == str(run) and int(record["step"]) == step:
        decision = Decision(True, "already the current model (re-evaluated)", None)
    else:
        incumbent = (store.summary(record["run"], int(record["step"]), bench_name) or None) if record else None
        name = f"{Path(record['run']).name}@{record['step']}" if record else None
        decision = decide(summary, incumbent, config.gate, name)
        if decision.promoted:
            switch_best(runs_root, run, step, {"run": str(run), "step": step, "benchmark": bench_name,
                                               "reason": decision.reason, "metrics": summary, "replaced": name})  # fmt: skip
            switched = True
    store.record_decision(str(run), step, bench_name, decision.promoted, decision.reason, decision.incumbent)
    return {"promoted": decision.promoted, "switched": switched, "reason": decision.reason, "incumbent": decision.incumbent,
            "metrics": summary}  # fmt: skip


def publish(store: MetricStore, bench_name: str, result: dict, decision: dict, primary: str, runs_root: Path) -> None:
    figures = result["figures"]
    rows = [{"item": f.item, "metric": f.metric, "identity": f.identity, "value": f.value} for f in figures]
    create_table_artifact(key="evaluation", table=rows or [{"note": n} for n in result["notes"]],
                          description=f"{bench_name}: {'promoted' if decision['promoted'] else 'not promoted'} "
                                      f"({decision['reason']}). Notes: {' | '.join(result['notes'])}")  # fmt: skip
    board = leaderboard_rows(store, bench_name, primary, incumbent_record(runs_root))
    create_table_artifact(
        key="leaderboard", table=board, description=f"Runs on {bench_name} by {primary}; incumbent marked"
    )
    create_markdown_artifact(key="metrics-over-runs", markdown=_image_markdown(f"Metrics over runs ({bench_name})",
                             metrics_plot(store, bench_name)), description="Each metric per evaluated run")  # fmt: skip


def score_store_gate(videos: Path, benchmark: str, config: EvaluationConfig, out_json: Path, run: Path | None,
                     step: int, runs_root: Path | None) -> dict:  # fmt: skip
    """Score `videos`, write `out_json`, publish the figures; for a run also store and gate them."""
    logger = get_run_logger()
    bench_name = Path(benchmark).resolve().name
    result = score_task(str(videos), benchmark, config)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    temp = out_json.with_name(f".{out_json.name}.part")
    temp.write_text(to_json(result))
    temp.replace(out_json)
    decision = {
        "promoted": False,
        "switched": False,
        "reason": "not a run (no --run): figures only",
        "incumbent": None,
        "metrics": result["summary"],
    }
    if run is None:
        rows = [
            {"item": f.item, "metric": f.metric, "identity": f.identity, "value": f.value} for f in result["figures"]
        ]
        create_table_artifact(key="evaluation", table=rows or [{"note": n} for n in result["notes"]],
                              description=f"{bench_name}. Notes: {' | '.join(result['notes'])}")  # fmt: skip
    else:
        root = runs_root or run.parent
        with MetricStore(root) as store:
            store.record(str(run), step, bench_name, result["figures"])
            decision = gate_and_record(store, root, run, step, bench_name, config)
            publish(store, bench_name, result, decision, config.gate.primary, root)
        logger.info("%s: %s (%s)", run.name, "promoted" if decision["promoted"] else "not promoted", decision["reason"])
        if decision["switched"]:
            model_promoted(str(run), step, bench_name, decision["reason"], decision["metrics"])
    return {"benchmark": bench_name, "json": str(out_json), "summary": result["summary"], "notes": result["notes"],
            "figures": [f.__dict__ for f in result["figures"]], **decision,
            "best": str(current_best(runs_root or run.parent) or "") if run else ""}  # fmt: skip


REFERENCE = "benchmark-reference"


def score_reference(bench, benchmark: str, config: EvaluationConfig, runs_root: Path) -> None:
    """The benchmark's own real recordings, scored once and stored as the run `benchmark-reference`
    (step 0): the leaderboard's and the plot's yardstick for what real footage scores. Never promoted."""
    bench_name = Path(benchmark).resolve().name
    if not any(item.video is not None for item in bench.items):
        return
    with MetricStore(runs_root) as store:
        if (REFERENCE, 0, bench_name) in store.evaluations(bench_name):
            return
    result = score_task(str(Path(benchmark).resolve()), benchmark, config)
    with MetricStore(runs_root) as store:
        store.record(REFERENCE, 0, bench_name, result["figures"])


@flow(name="score-videos", log_prints=True, persist_result=False)
def score_videos(videos: str, benchmark: str, out_json: str, config_path: str | None = None, run: str | None = None,
                 step: int = 0, runs_root: str | None = None) -> dict:  # fmt: skip
    """Score a folder of videos against a benchmark (`anytalker evaluate`); with `run`, store the
    figures as that run's and apply the promotion gate."""
    config = load_evaluation_config(config_path)
    return score_store_gate(Path(videos), benchmark, config, Path(out_json), Path(run).resolve() if run else None, step,
                            Path(runs_root).resolve() if runs_root else None)  # fmt: skip


@flow(name="evaluate", log_prints=True, persist_result=False)
def evaluate(run: str, benchmark: str, step: int | None = None, shards: str | None = None,
             runs_root: str | None = None, config_path: str | None = None) -> dict:  # fmt: skip
    """Generate `benchmark` with `run`/model, score it, store the figures under `runs_root`
    (default: the run's parent), and promote the run when it beats RUNS/best."""
    from flows.generate import SamplingOptions, generate

    logger = get_run_logger()
    config = load_evaluation_config(config_path)
    run_dir = Path(run).resolve()
    if not (run_dir / "model").is_dir():
        raise FileNotFoundError(f"{run_dir}: no model/ folder (a finished training run writes one)")
    if step is None:
        metrics = run_dir / "metrics.json"
        step = int(json.loads(metrics.read_text()).get("step", 0)) if metrics.is_file() else 0
    bench = read_benchmark(benchmark)
    work = run_dir / "eval" / Path(benchmark).resolve().name / f"step-{step:06d}"
    batch = generation_batch(bench.items, work / "inputs.json", frames_dir=work / "references")
    generated = generate(str(run_dir / "model"), str(work / "videos"), input_json=str(batch),
                         options=SamplingOptions(steps=config.steps, max_area=config.max_area))  # fmt: skip
    logger.info("generated: %s", generated["counts"])
    root = Path(runs_root).resolve() if runs_root else run_dir.parent
    score_reference(bench, benchmark, config, root)
    result = score_store_gate(work / "videos", benchmark, config, work / "evaluation.json", run_dir, step,
                              Path(runs_root).resolve() if runs_root else None)  # fmt: skip
    return {"run": str(run_dir), "step": step, "shards": shards, "generated": generated["counts"], **result}
