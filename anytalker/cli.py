"""`anytalker`: the command line. Each command is a thin shell over a flow or a task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from anytalker import prefect_env

app = typer.Typer(
    help="Curate talking-head video into AnyTalker training data (and, later, train on it).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML or TOML config; see `anytalker config` for every key.")
]


def _catalog_path(workdir: Path) -> Path:
    from tasks.workdir import catalog_path

    return catalog_path(workdir)


def _prefect_home(workdir: Path) -> Path:
    from tasks.workdir import prefect_home

    return prefect_home(workdir)


@app.command()
def curate(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Video files, folders (recursive), list files (.txt/.list or @FILE), manifests (.csv/.jsonl: url, "
            "start, end), and http(s) URLs: a video, a playlist, a channel or a page of videos; URL#t=START,END "
            "takes that section only."
        ),
    ],
    workdir: Annotated[Path, typer.Option("--workdir", "-w", help="Where clips, downloads and the catalog live.")],
    config: ConfigOpt = None,
) -> None:
    """Ingest INPUTS, split them into shots, analyse every clip and write the kept ones, recording a verdict for each.

    Only accepted clips and stage-2 candidates are encoded (standardize.write_rejected: true writes all); a changed
    threshold is applied later with `anytalker recut`. Runs on Prefect's embedded server, or against the server in PREFECT_API_URL when it is set.
    A rerun skips what is done.
    """
    workdir = workdir.resolve()
    prefect_env.configure(_prefect_home(workdir))
    from flows.curate import curate as curate_flow
    from flows.runners import ClusterError, check_cluster
    from tasks.config import ConfigError, load_config
    from tasks.curation.analysis.analyze import check_models
    from tasks.curation.analysis.speech import SpeechUnavailable
    from tasks.models import ModelsMissing

    try:
        settings = load_config(config)
        check_cluster(settings.cluster)
        if settings.analyze:
            check_models(settings)
    except (ConfigError, ClusterError, ModelsMissing, SpeechUnavailable) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    result = curate_flow(inputs=inputs, workdir=str(workdir), config_path=str(config) if config else None)
    typer.echo(json.dumps(result["counts"], indent=2))


@app.command()
def report(
    workdir: Annotated[Path, typer.Argument(help="A work directory written by `anytalker curate`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: counts and one item per clip.")] = False,
) -> None:
    """Show every clip and every input rejected before splitting, with its verdict and reason."""
    from anytalker.report_view import print_report
    from tasks.catalog import Catalog

    if not _catalog_path(workdir).exists():
        typer.secho(f"error: no catalog in {workdir} (run `anytalker curate` first)", fg="red", err=True)
        raise typer.Exit(2)
    with Catalog(workdir) as catalog:
        data = catalog.report()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        print_report(data)


@app.command()
def recut(
    workdir: Annotated[Path, typer.Option("--workdir", "-w", help="The curated work directory.")],
    config: ConfigOpt = None,
) -> None:
    """Judge every analysed clip again under CONFIG's thresholds and cut the clips it now keeps from their sources.

    No model runs: verdicts come from the metrics in the catalog. A newly kept clip is cut from its source, which
    must still be on disk (ingest.keep_sources). A clip whose analysis stopped at an earlier check keeps its verdict
    where a stage it never reached would decide (those need every_metric: true and a new analysis). Exits 1 when
    kept clips could not be cut.
    """
    from tasks.config import ConfigError, load_config
    from tasks.curation.recut import recut as recut_clips

    if not _catalog_path(workdir).exists():
        typer.secho(f"error: no catalog in {workdir} (run `anytalker curate` first)", fg="red", err=True)
        raise typer.Exit(2)
    try:
        settings = load_config(config)
    except ConfigError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    summary = recut_clips(workdir.resolve(), settings)
    changed = ", ".join(f"{k}: {n}" for k, n in sorted(summary.changed.items())) or "none"
    typer.echo(f"judged {summary.judged} clips; verdicts changed: {changed}; {summary.written} clips cut")
    if summary.unreached:
        typer.echo(f"{summary.unreached} clips kept their verdict: their analysis stopped before the stage that "
                   "would now decide (every_metric: true measures every stage)")  # fmt: skip
    for source in summary.source_missing:
        typer.secho(f"{source}: its source is no longer on disk; clips it now keeps were not cut", fg="yellow", err=True)
    for failure in summary.failed:
        typer.secho(f"cut failed: {failure}", fg="yellow", err=True)
    if summary.source_missing or summary.failed:
        raise typer.Exit(1)


@app.command()
def forget(
    sources: Annotated[
        list[str],
        typer.Argument(help="Sources to remove: a source id (or its first 12+ characters), an input as the report "
                       "shows it, a video URL, or a site's video id."),
    ],
    workdir: Annotated[Path, typer.Option("--workdir", "-w", help="The curated work directory.")],
) -> None:
    """Remove sources from the catalog, from disk and from future shard sets (a takedown request).

    Their clips, analysis and downloads are deleted. Their inputs stay in the report, rejected as `forgotten`.
    No later run fetches them again. Exits 1 when a SOURCE matches nothing.
    """
    from tasks.curation.takedown import forget as forget_source

    if not _catalog_path(workdir).exists():
        typer.secho(f"error: no catalog in {workdir} (run `anytalker curate` first)", fg="red", err=True)
        raise typer.Exit(2)
    missing = 0
    for selector in sources:
        gone = forget_source(workdir.resolve(), selector)
        if not gone:
            typer.secho(f"{selector}: no source matches (see `anytalker report {workdir}`)", fg="yellow", err=True)
            missing += 1
        for entry in gone:
            typer.echo(f"forgot {entry['source_id'][:12]} ({', '.join(entry['inputs'])}): {len(entry['clips'])} clips"
                       + (", downloaded source deleted" if entry.get("deleted_source") else ""))  # fmt: skip
    if missing:
        raise typer.Exit(1)


@app.command(context_settings={"help_option_names": ["--help", "-h"]})
def shards(
    workdir: Annotated[str, typer.Argument(help="A curated work directory, or `inspect` / `encode`.", metavar="WORKDIR|inspect|encode")],
    target: Annotated[str | None, typer.Argument(help="With `inspect` or `encode`: the shard set.", metavar="[DIR]")] = None,
    out: Annotated[str | None, typer.Option("--out", "-o", help="Shard set to write (a folder or fsspec URL).")] = None,
    identities: Annotated[
        str | None, typer.Option(help="Identity counts of the composites, e.g. 2,3 (default: compose.identities).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the plan: same seed, same samples.")] = 0,
    config: ConfigOpt = None,
    preview: Annotated[Path | None, typer.Option(help="With `inspect`: where to write the preview PNG.")] = None,
    versioned: Annotated[
        bool, typer.Option(help="Write the set into OUT/set-<id>, the id a hash of its plan (new clips: a new set).")
    ] = False,
) -> None:
    """Build training shards from curated clips, or inspect a shard set.

    `anytalker shards WORKDIR --out DIR [--identities 2,3] [--seed N]` builds (or resumes) the WebDataset shard set DIR: composites of 2-4 people, single-person clips and real multi-person clips, split train/val by person (the Prefect flow `build_shards`).

    `anytalker shards inspect DIR` prints the set's summary and writes a preview image.

    `anytalker shards encode SRC --out DST --config TRAIN.yaml` writes a copy of SRC with the frozen encoders' outputs (VAE latents, wav2vec2 features, face tokens) at the config's training size, so training skips the encoders.
    """  # noqa: E501
    if workdir == "encode":
        if not target or out is None or config is None:
            typer.secho("error: `anytalker shards encode SRC --out DST --config TRAIN.yaml`", fg="red", err=True)
            raise typer.Exit(2)
        prefect_env.configure(Path(out).resolve() / ".prefect" if "://" not in out else None)
        from flows.encode_shards import encode_shards

        encode_shards(target, out, str(config))
        _inspect_shards(out, None)
        return
    if workdir == "inspect":
        if not target:
            typer.secho("error: `anytalker shards inspect DIR` needs the shard set", fg="red", err=True)
            raise typer.Exit(2)
        _inspect_shards(target, preview)
        return
    if out is None:
        typer.secho("error: --out DIR is required to build shards", fg="red", err=True)
        raise typer.Exit(2)
    work = Path(workdir).resolve()
    if not _catalog_path(work).exists():
        typer.secho(f"error: no catalog in {work} (run `anytalker curate` first)", fg="red", err=True)
        raise typer.Exit(2)
    try:
        counts = [int(x) for x in identities.split(",")] if identities else None
        if counts and not all(2 <= n <= 4 for n in counts):
            raise ValueError
    except ValueError:
        typer.secho(f"error: --identities takes counts from 2 to 4, e.g. 2,3; got {identities!r}", fg="red", err=True)
        raise typer.Exit(2) from None
    prefect_env.configure(_prefect_home(work))
    from flows.build_shards import build_shards
    from tasks.config import ConfigError, load_config

    try:
        load_config(config)
    except ConfigError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    result = build_shards(str(work), out, counts, seed, str(config) if config else None, versioned)
    typer.echo(f"wrote {result['written']} samples, {result['skipped']} already in complete shards, "
               f"{len(result['failed'])} failed")  # fmt: skip
    _inspect_shards(result["out"], None)


@app.command()
def train(
    shards: Annotated[str, typer.Option("--shards", help="A shard set written by `anytalker shards`.")],
    config: Annotated[Path, typer.Option("--config", "-c", help="Training YAML: configs/tiny.yaml, 1.3B.yaml, 14B.yaml.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The run folder; rerunning into it resumes.")],
    workers: Annotated[int, typer.Option(help="Ray Train workers.")] = 2,
    gpus_per_worker: Annotated[float, typer.Option(help="GPUs per worker (0: CPU).")] = 0,
    max_steps: Annotated[int, typer.Option(help="Train until this global step.")] = 100,
    strategy: Annotated[str, typer.Option(help="ddp, or fsdp for the 14B shape.")] = "ddp",
) -> None:
    """Train the identity-aware DiT on a shard set with Lightning on Ray Train (Prefect flow `train`).

    Uses the Ray cluster in RAY_ADDRESS, else starts a local one on 127.0.0.1. Checkpoints go to OUT/checkpoints every train.checkpoint_every steps; the same command again resumes from the last one. The trained model is written to OUT/model (diffusers format).
    """  # noqa: E501
    from model.config import load_run_config

    if strategy not in ("ddp", "fsdp"):
        typer.secho(f"error: --strategy is ddp or fsdp, got {strategy!r}", fg="red", err=True)
        raise typer.Exit(2)
    try:
        run_config = load_run_config(config)
        from model.data import check_shard_set
        from shards.writer import shard_urls

        if not shard_urls(shards, "train"):
            raise ValueError(f"{shards}: no train shards in its index.json")
        check_shard_set(shards, run_config.model.fps, run_config.data.frames)
    except (ValueError, FileNotFoundError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    out = out.resolve()
    prefect_env.configure(_prefect_home(out))
    from flows.train import train as train_flow

    result = train_flow(shards, str(config.resolve()), str(out), workers, gpus_per_worker, max_steps, strategy)
    typer.echo(json.dumps({k: v for k, v in result.items()}, indent=2))


def _inspect_shards(target: str, preview: Path | None) -> None:
    from anytalker.shards_view import print_shard_set

    try:
        print_shard_set(target, preview)
    except FileNotFoundError as exc:
        typer.secho(f"error: no shard set at {target} ({exc})", fg="red", err=True)
        raise typer.Exit(2) from None


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option("--workdir", "-w", help="Where the demo media and its results go.")] = Path(
        "demo-work"
    ),
) -> None:
    """Make the synthetic demo media (labelled as such) and run the whole chain on it through
    Prefect deployments: a local server (127.0.0.1, database in WORKDIR/.prefect), prefect.yaml
    deployed with ANYTALKER_DATA=WORKDIR, a process worker, then curate -> build-shards -> train -> evaluate,
    each started by the event of the one before.

    Face models come from the usual places (ANYTALKER_FACE_MODELS / insightface's model zoo,
    ANYTALKER_FACE_LANDMARKER / MediaPipe's model store), else from a ../shared/models folder
    beside the checkout (the project's CI layout); without any, the demo runs without analysis
    and says so.
    """
    from anytalker.demo_media import make_demo_benchmark, make_demo_media, prepare_demo_models
    from anytalker.demo_run import run_chain
    from anytalker.local_prefect import free_port, start_server

    workdir = workdir.resolve()
    media = make_demo_media(workdir / "incoming")
    typer.echo(f"demo media (synthetic): {media}")
    config, note = prepare_demo_models(workdir)
    if note:
        typer.secho(note, fg="yellow", err=True)
    typer.echo(f"demo benchmark (synthetic): {make_demo_benchmark(workdir / 'benchmark')}")
    home = _prefect_home(workdir)
    typer.echo(f"starting a local Prefect server (database in {home})")
    with start_server(home, free_port(4200)) as server:
        typer.echo(f"Prefect UI: {server.url}")
        states = run_chain(server, workdir, media, config, typer.echo)
    report(workdir / "curated", as_json=False)
    sets = sorted((workdir / "shards").glob("set-*/index.json"), key=lambda p: p.stat().st_mtime)
    if sets:
        _inspect_shards(str(sets[-1].parent), None)
    for run in sorted((workdir / "runs").glob("set-*/metrics.json"), key=lambda p: p.stat().st_mtime)[-1:]:
        typer.echo(f"training run {run.parent}: {run.read_text().strip()}")
    if (workdir / "runs" / "evaluations.sqlite").is_file():
        from tasks.evaluation.metric_store import MetricStore

        with MetricStore(workdir / "runs") as store:
            for d in store.decisions()[-1:]:
                summary = store.summary(d["run"], d["step"], d["benchmark"])
                typer.echo(f"evaluation of {Path(d['run']).name} on {d['benchmark']}: {summary or 'no figures'}; "
                           f"{'promoted' if d['promoted'] else 'not promoted'} ({d['reason']})")  # fmt: skip
    typer.echo("deployments: " + ", ".join(f"{name} {state}" for name, state in states.items()))
    typer.echo(f"to look at these runs: anytalker dashboard --home {home}")
    if any(state not in ("Completed", "not triggered") for state in states.values()):
        raise typer.Exit(1)


@app.command()
def dashboard(
    home: Annotated[
        Path | None,
        typer.Option(help="The PREFECT_HOME whose runs to show, e.g. demo-work/.prefect (default: PREFECT_HOME, "
                     "else ~/.prefect)."),
    ] = None,
    port: Annotated[int, typer.Option(help="Port of the Prefect UI and API on 127.0.0.1.")] = 4200,
) -> None:
    """Start the Prefect server (UI and API) on 127.0.0.1 and print where the dashboards are:
    the Prefect UI, and Ray's and TensorBoard's when they run. Ctrl-C stops it."""
    import os

    from anytalker.dashboards import ray_dashboards, tensorboards
    from anytalker.local_prefect import start_server

    home = (home or Path(os.environ.get("PREFECT_HOME", Path.home() / ".prefect"))).resolve()
    try:
        server = start_server(home, port)
    except RuntimeError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Prefect UI:  {server.url}  (runs, artifacts, deployments; database in {home})")
    typer.echo(f"Prefect API: {server.api_url}  (export PREFECT_API_URL={server.api_url} to run flows against it)")
    for url in ray_dashboards() or ["not running (it starts with a Ray cluster: `anytalker train`, or RAY_ADDRESS)"]:
        typer.echo(f"Ray dashboard: {url}")
    for url in tensorboards() or ["not running (`tensorboard --logdir RUN/tensorboard --host 127.0.0.1`)"]:
        typer.echo(f"TensorBoard: {url}")
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a `kill` stops the server too, not only Ctrl-C
    try:
        server.process.wait()
    except KeyboardInterrupt:
        typer.echo("stopping the Prefect server")
    finally:
        server.stop()


@app.command("config")
def show_config() -> None:
    """Print the default configuration as YAML (every key, with its default)."""
    from tasks.config import dump_default_config

    typer.echo(dump_default_config(), nl=False)




model_app = typer.Typer(help="Model folders: import the released AnyTalker checkpoints, or make a random one.",
                        no_args_is_help=True)  # fmt: skip
app.add_typer(model_app, name="model")


def _fail(exc: Exception) -> typer.Exit:
    typer.secho(f"error: {exc}", fg="red", err=True)
    return typer.Exit(2)


def _encoder_config(config: Path, wan_dir: Path | None, wav2vec2: Path | None):
    """The encoders a model folder will run with: the config's, with folders overridden."""
    from model.config import EncoderConfig, TextEncoderConfig, load_run_config

    model = load_run_config(config).model
    update: dict = {}
    if wan_dir is not None:
        for sub in ("vae", "text_encoder", "tokenizer", "image_encoder"):
            if not (wan_dir / sub).is_dir():
                raise ValueError(f"{wan_dir} has no {sub}/: give a diffusers Wan2.1 image-to-video folder")
        update |= {"vae": EncoderConfig(pretrained=str(wan_dir / "vae")),
                   "face_encoder": EncoderConfig(pretrained=str(wan_dir / "image_encoder")),
                   "text_encoder": TextEncoderConfig(pretrained=str(wan_dir / "text_encoder"),
                                                     tokenizer=str(wan_dir / "tokenizer"))}  # fmt: skip
    if wav2vec2 is not None:
        update["audio_encoder"] = EncoderConfig(pretrained=str(wav2vec2))
    return model.model_copy(update=update)


@model_app.command("import")
def model_import(
    checkpoint: Annotated[Path, typer.Argument(help="The official checkpoint, e.g. 1_3B-single-v1.pth ({'model': state_dict}).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The model folder to write (transformer/, adapter/, anytalker.yaml).")],
    config: Annotated[Path, typer.Option("--config", "-c", help="Run config whose encoders the folder uses.")] = Path("configs/1.3B.yaml"),
    wan_dir: Annotated[Path | None, typer.Option(help="A diffusers Wan2.1 I2V folder: its vae/, text_encoder/, tokenizer/, image_encoder/.")] = None,
    wav2vec2: Annotated[Path | None, typer.Option(help="A wav2vec2-base-960h folder (transformers format).")] = None,
    head_dim: Annotated[int, typer.Option(help="Attention head size (Wan2.1: 128).")] = 128,
    audio_layers: Annotated[int, typer.Option(help="wav2vec2 hidden layers the audio projection reads (base: 12).")] = 12,
) -> None:
    """Import a released AnyTalker checkpoint into a model folder (memory-mapped, loaded strictly)."""
    from model.official import ImportRefused, ImportShape, import_checkpoint

    try:
        encoders = _encoder_config(config, wan_dir, wav2vec2)
        result = import_checkpoint(checkpoint, out, encoders, ImportShape(head_dim=head_dim, audio_layers=audio_layers))
    except (ImportRefused, ValueError) as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps(result, indent=2))


@model_app.command("init")
def model_init(
    out: Annotated[Path, typer.Option("--out", "-o", help="The model folder to write.")],
    config: Annotated[Path, typer.Option("--config", "-c", help="Run config of the shape (configs/tiny.yaml ...).")] = Path("configs/tiny.yaml"),
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """A randomly initialised model folder of a config's shape, for smoke runs of generate."""
    from model.config import load_run_config
    from model.folder import init_model

    try:
        path = init_model(load_run_config(config), out, seed)
    except ValueError as exc:
        raise _fail(exc) from None
    typer.echo(str(path))


def _area(text: str) -> int:
    w, _, h = text.lower().partition("x")
    if not (w.isdigit() and h.isdigit()):
        raise typer.BadParameter(f"expected WIDTHxHEIGHT such as 832x480, got {text!r}")
    return int(w) * int(h)


@app.command()
def generate(
    input_json: Annotated[Path | None, typer.Argument(help="A batch in AnyTalker's format (customize_your_input_here.json).")] = None,
    model: Annotated[Path, typer.Option("--model", "-m", help="A model folder (`anytalker model import`, or a run's model/).")] = Path("model"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the videos.")] = Path("outputs"),
    image: Annotated[Path | None, typer.Option(help="One clip: the reference image.")] = None,
    audio: Annotated[list[Path] | None, typer.Option(help="One clip: a track per person, bound to faces left to right.")] = None,
    caption: Annotated[str, typer.Option(help="One clip: the caption.")] = "",
    steps: Annotated[int, typer.Option(help="Sampling steps (their 1.3B command: 40).")] = 40,
    guidance: Annotated[float, typer.Option(help="One guidance scale for text and audio.")] = 4.5,
    shift: Annotated[float, typer.Option(help="Flow-matching shift (3.0 at 832x480).")] = 3.0,
    seed: Annotated[int, typer.Option(help="Noise seed.")] = 0,
    max_area: Annotated[str, typer.Option(help="Largest video size as WxH; the image's aspect is kept.")] = "832x480",
    audio_mode: Annotated[str, typer.Option(help="pad: tracks play together; concat: one after another.")] = "pad",
) -> None:
    """Generate talking videos with a model folder (Prefect flow `generate`); existing outputs are skipped."""
    from model.config import read_model_config
    from tasks.evaluation.generation_inputs import GenerationInputError, load_image, load_track, read_batch

    if audio_mode not in ("pad", "concat"):
        raise _fail(ValueError(f"--audio-mode is pad or concat, got {audio_mode!r}"))
    try:
        read_model_config(model)
        if input_json is not None:
            read_batch(input_json)
        elif image is None or not audio:
            raise GenerationInputError("give INPUT_JSON, or --image and at least one --audio")
        else:  # one clip: its files are read before a flow starts (a batch reports them per entry)
            load_image(image)
            for track in audio:
                load_track(track)
    except (ValueError, GenerationInputError) as exc:
        raise _fail(exc) from None
    out = out.resolve()
    prefect_env.configure(_prefect_home(out))
    from flows.generate import SamplingOptions
    from flows.generate import generate as generate_flow

    options = SamplingOptions(steps=steps, guidance=guidance, shift=shift, seed=seed, max_area=_area(max_area),
                              audio_mode=audio_mode)  # fmt: skip
    result = generate_flow(str(model.resolve()), str(out), str(input_json) if input_json else None,
                           str(image) if image else None, [str(a) for a in audio or []], caption, None, options)  # fmt: skip
    for row in result["videos"]:
        typer.echo(f"{row['status']:8} {row['key']}: {row['output'] or row['reason']}")
    if result["counts"]["failed"]:
        raise typer.Exit(1)


@app.command()
def evaluate(
    videos: Annotated[Path, typer.Argument(help="A folder of videos (or one video) named after benchmark items.")],
    benchmark: Annotated[Path, typer.Option("--benchmark", "-b", help="A benchmark folder (speaker_duration.json, audio_left/, audio_right/, images/).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON instead of a table.")] = False,
    config: ConfigOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Where the JSON goes (default VIDEOS/evaluation.json).")] = None,
    run: Annotated[Path | None, typer.Option(help="Store the figures as this training run's and apply the promotion gate.")] = None,
    step: Annotated[int, typer.Option(help="The run's step these videos come from.")] = 0,
    runs_root: Annotated[Path | None, typer.Option(help="Folder of runs holding evaluations.sqlite and best (default: the run's parent).")] = None,
) -> None:
    """Score videos against a benchmark: interactivity, lip sync per identity, identity
    similarity, who speaks when (and FVD with an I3D file). Prints a table, writes JSON,
    publishes Prefect artifacts (Prefect flow `score-videos`)."""
    from tasks.evaluation.benchmark import BenchmarkError, read_benchmark
    from tasks.evaluation.scoring import load_evaluation_config

    try:
        if not videos.exists():
            raise FileNotFoundError(f"no such file or folder: {videos}")
        read_benchmark(benchmark)
        load_evaluation_config(config)
        if run is not None and not run.is_dir():
            raise FileNotFoundError(f"--run {run}: not a folder")
    except (BenchmarkError, FileNotFoundError, ValueError) as exc:
        raise _fail(exc) from None
    target = (out or (videos if videos.is_dir() else videos.parent) / "evaluation.json").resolve()
    prefect_env.configure(_prefect_home(target.parent))
    from flows.evaluate import score_videos

    result = score_videos(str(videos.resolve()), str(benchmark.resolve()), str(target), str(config) if config else None,
                          str(run.resolve()) if run else None, step, str(runs_root.resolve()) if runs_root else None)  # fmt: skip
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result['benchmark']}: {len(result['figures'])} figures ({target})")
    for column in ("item", "metric", "identity", "value"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for f in result["figures"]:
        table.add_row(f["item"], f["metric"], f["identity"], f"{f['value']:.4f}")
    console = Console()
    console.print(table)
    for note in result["notes"]:
        console.print(f"[yellow]note:[/yellow] {note}")
    if run is not None:
        console.print(f"{'promoted' if result['promoted'] else 'not promoted'}: {result['reason']}")


benchmark_app = typer.Typer(help="Interactivity benchmarks in AnyTalker's layout: build one from your footage, fetch theirs.",
                            no_args_is_help=True)  # fmt: skip
app.add_typer(benchmark_app, name="benchmark")


@benchmark_app.command("build")
def benchmark_build(
    workdir: Annotated[Path, typer.Argument(help="A curated work directory (`anytalker curate` then `anytalker shards`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The benchmark folder to write.")],
) -> None:
    """Turn the real multi-person clips stage 2 accepted into a benchmark: reference frame,
    one audio track per face, speaking intervals, the clip itself."""
    from tasks.evaluation.benchmark_build import build_benchmark

    if not _catalog_path(workdir).is_file():
        raise _fail(FileNotFoundError(f"{workdir}: no catalog.sqlite (curate into it first)"))
    items, skipped = build_benchmark(workdir, out)
    for item in items:
        typer.echo(f"item {item.name}: {item.n} identities, {sum(len(s) for s in item.speaking)} speaking intervals")
    for reason in skipped:
        typer.secho(f"left out {reason}", fg="yellow", err=True)
    if not items:
        raise _fail(ValueError(f"{workdir}: no stage-2 accepted clip (real multi-person footage) to build from; "
                               f"run `anytalker shards` on it first"))  # fmt: skip
    typer.echo(f"benchmark: {out} ({len(items)} items)")


@benchmark_app.command("fetch-frames")
def benchmark_fetch_frames(
    folder: Annotated[Path, typer.Argument(help="The benchmark folder; frames go to FOLDER/images/.")],
    list_file: Annotated[Path, typer.Option("--list", "-l", help="Lines of `VIDEO TIME [NAME]` (YouTube id or URL, seconds).")],
) -> None:
    """Fetch reference frames with yt-dlp + ffmpeg (needs internet; refuses clearly offline)."""
    from tasks.evaluation.fetch_frames import FetchError, fetch_frames

    try:
        done, failed = fetch_frames(folder, list_file)
    except FetchError as exc:
        raise _fail(exc) from None
    for path in done:
        typer.echo(f"frame {path}")
    for reason in failed:
        typer.secho(f"error: {reason}", fg="red", err=True)
    if failed:
        raise typer.Exit(1)
