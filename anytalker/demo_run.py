"""The demo as a team runs it: a local Prefect server, the deployments of prefect.yaml, a process
worker, and the chain their triggers make (curate -> build-shards -> train -> evaluate), watched
to the end.

The demo changes only its own deployments' parameters (the tiny training config, a few steps,
the demo's config file) so the chain finishes on a laptop CPU in minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from anytalker.local_prefect import LocalServer, deploy_all, ensure_work_pool, start_worker, stop_process

DEMO_TRAIN = {"config_path": "configs/tiny.yaml", "max_steps": 10, "workers": 2}
# The tiny model generates small videos in a few steps: the chain, not the picture, is the demo.
DEMO_EVALUATE = "steps: 4\nmax_area: 8192\n"


def _set_parameters(client, name: str, updates: dict) -> None:
    from prefect.client.schemas.actions import DeploymentUpdate

    deployment = client.read_deployment_by_name(name)
    client.update_deployment(deployment.id, DeploymentUpdate(parameters={**deployment.parameters, **updates}))


def _runs_of(client, name: str, since: datetime) -> list:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deployment = client.read_deployment_by_name(name)
    runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
    return sorted((r for r in runs if r.created and r.created >= since), key=lambda r: r.created)


def wait_for_run(client, name: str, since: datetime, appear_s: float, finish_s: float, say: Callable[[str], None],
                 server: LocalServer):  # fmt: skip
    """The first run of deployment `name` created after `since`, followed to a final state;
    None when no run appears within `appear_s` (its trigger did not fire)."""
    deadline = time.monotonic() + appear_s
    while not (runs := _runs_of(client, name, since)):
        if time.monotonic() > deadline:
            return None
        time.sleep(2)
    run = runs[0]
    say(f"{name}: flow run {run.name} ({server.url}/runs/flow-run/{run.id})")
    deadline, last = time.monotonic() + finish_s, None
    while True:
        run = client.read_flow_run(run.id)
        if run.state_name != last:
            say(f"{name}: {run.state_name}")
            last = run.state_name
        if run.state and run.state.is_final():
            return run
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} did not finish in {finish_s:.0f} s (see {server.home}/worker.log)")
        time.sleep(2)


def run_chain(server: LocalServer, workdir: Path, media: Path, config: Path | None,
              say: Callable[[str], None]) -> dict[str, str]:  # fmt: skip
    """Deploy, start a worker, run `curate` on the demo media and follow what its events trigger.
    Returns each deployment's final state name ("not triggered" when nothing new asked for it)."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    ensure_work_pool(server)
    deploy_all(server, workdir)
    say(f"deployed prefect.yaml to {server.url} (ANYTALKER_DATA={workdir}); starting a process worker")
    worker = start_worker(server, server.home / "worker.log")
    states: dict[str, str] = {}
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}), get_client(sync_client=True) as client:
            cfg = str(config) if config else None
            _set_parameters(client, "build_shards/build-shards", {"config_path": cfg})
            _set_parameters(client, "train/train", DEMO_TRAIN)
            evaluate_config = workdir / "demo-evaluate.yaml"
            evaluate_config.write_text(DEMO_EVALUATE)
            _set_parameters(client, "evaluate/evaluate", {"config_path": str(evaluate_config)})
            since = datetime.now(UTC)
            run_deployment("curate/curate", parameters={"inputs": [str(media)], "config_path": cfg}, timeout=0)
            chain = (("curate/curate", 120), ("build_shards/build-shards", 90), ("train/train", 90),
                     ("evaluate/evaluate", 90))  # fmt: skip
            for name, appear_s in chain:
                run = wait_for_run(client, name, since, appear_s, 1800, say, server)
                states[name] = run.state_name if run else "not triggered"
                if run is None or not run.state.is_completed():
                    break
    finally:
        stop_process(worker)
    return states
