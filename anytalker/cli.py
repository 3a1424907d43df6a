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


def _prefect_home(workdir: Path) -> Path:
    """Embedded runs keep Prefect's database beside the work unless PREFECT_HOME says otherwise."""
    return workdir / ".prefect"


@app.command()
def curate(
    inputs: Annotated[
        list[str],
        typer.Argument(help="Video files, folders (recursive), list files (.txt/.list or @FILE) and http(s) URLs."),
    ],
    workdir: Annotated[Path, typer.Option("--workdir", "-w", help="Where clips, downloads and the catalog live.")],
    config: ConfigOpt = None,
) -> None:
    """Ingest INPUTS, split them into shots and write standard clips, recording a verdict for each.

    Runs on Prefect's embedded server, or against the server in PREFECT_API_URL when it is set.
    A rerun skips what is done.
    """
    workdir = workdir.resolve()
    prefect_env.configure(_prefect_home(workdir))
    from flows.curate import curate as curate_flow
    from tasks.analyze import check_models
    from tasks.config import ConfigError, load_config
    from tasks.faces import ModelsMissing
    from tasks.speech import SpeechUnavailable

    try:
        settings = load_config(config)
        if settings.analyze:
            check_models(settings)
    except (ConfigError, ModelsMissing, SpeechUnavailable) as exc:
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

    if not (workdir / "catalog.sqlite").exists():
        typer.secho(f"error: no catalog in {workdir} (run `anytalker curate` first)", fg="red", err=True)
        raise typer.Exit(2)
    with Catalog(workdir) as catalog:
        data = catalog.report()
    if as_json:
        typer.echo(json.dumps(data, indent=2))
    else:
        print_report(data)


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option("--workdir", "-w", help="Where the demo media and its results go.")] = Path(
        "demo-work"
    ),
) -> None:
    """Make the synthetic demo media (labelled as such) and run everything on it.

    Face models come from the usual places (ANYTALKER_FACE_MODELS / insightface's model zoo,
    ANYTALKER_FACE_LANDMARKER / MediaPipe's model store), else from a ../shared/models folder
    beside the checkout (the project's CI layout); without any, the demo runs without analysis
    and says so.
    """
    from anytalker.demo_media import make_demo_media, prepare_demo_models

    workdir = workdir.resolve()
    media = make_demo_media(workdir / "media")
    typer.echo(f"demo media (synthetic): {media}")
    config, note = prepare_demo_models(workdir)
    if note:
        typer.secho(note, fg="yellow", err=True)
    curate([str(media)], workdir / "curated", config)
    report(workdir / "curated", as_json=False)


@app.command("config")
def show_config() -> None:
    """Print the default configuration as YAML (every key, with its default)."""
    from tasks.config import dump_default_config

    typer.echo(dump_default_config(), nl=False)


