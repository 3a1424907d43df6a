"""Distributed curation: the curate flow's tasks on a Ray cluster (prefect-ray's RayTaskRunner),
against a Prefect server, with the cluster bound to loopback as a local one must be."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import session_prefect_env

from anytalker import local_ray

# The demo's synthetic media: what its curate deployment judges them (tests/test_demo.py)
VIDEOS = {"synthetic_talker_a.mp4": "accepted", "synthetic_silent.mp4": "no_speech", "synthetic_two_faces.mp4": "multi_face"}


@pytest.fixture
def ray_head() -> tuple[str, str]:
    """A one-node Ray cluster on 127.0.0.1 (2 CPUs, its dashboard on loopback); stopped afterwards."""
    with local_ray.ray_head(cpus=2, dashboard=True) as head:
        yield head


@pytest.mark.slow
def test_curate_runs_its_tasks_on_a_ray_cluster(prefect_server, demo_media: Path, shared_models: Path,
                                                ray_head: tuple[str, str], tmp_path: Path) -> None:  # fmt: skip
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from ray.util.state import list_tasks

    address, dashboard = ray_head
    config = tmp_path / "cluster.yaml"
    config.write_text(f"cluster: {{ray_address: '{address}', acquire_cpus: 0.5, split_cpus: 1, analyze_cpus: 1}}\n")
    work = tmp_path / "work"
    env = session_prefect_env(**local_ray.LOOPBACK_ENV)
    env.pop("RAY_ADDRESS", None)
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "anytalker", "curate", *(str(demo_media / v) for v in VIDEOS), "-w", str(work),
         "--config", str(config)],
        env=env, capture_output=True, text=True, timeout=1500,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"Connecting to an existing Ray instance at {address}" in done.stdout + done.stderr

    # the same verdicts as the demo's local run
    report = subprocess.run([sys.executable, "-m", "anytalker", "report", str(work), "--json"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    verdicts = {Path(i["source"]).name: i["reason"] or i["verdict"] for i in json.loads(report.stdout)["items"]}
    assert verdicts == VIDEOS

    # every task ran on the cluster, finished, and asked for the configured resources
    ran = [t for t in list_tasks(address=dashboard, detail=True, limit=1000, raise_on_missing_output=False)
           if t.creation_time_ms is None or t.creation_time_ms / 1000 >= started - 5]  # fmt: skip
    by_name: dict[str, list] = {}
    for t in ran:
        by_name.setdefault(t.name, []).append(t)
    assert len(by_name.get("acquire", [])) == 3 and len(by_name.get("curate-source", [])) == 3, sorted(by_name)
    assert "analyze-clips" not in by_name  # each source's clips are analysed inside its own task
    for name, cpus in (("acquire", 0.5), ("curate-source", 1.0)):
        for t in by_name[name]:
            assert t.state == "FINISHED", (name, t.state)
            assert t.required_resources.get("CPU") == cpus, (name, t.required_resources)

    # and Prefect saw every task run complete under the flow run
    with get_client(sync_client=True) as client:
        (run,) = [r for r in client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=["curate"])))
                  if r.start_time and r.start_time.timestamp() >= started - 5]  # fmt: skip
        assert run.state.is_completed()
        task_runs = client.read_task_runs(flow_run_filter=None, limit=200)
        mine = [t for t in task_runs if t.flow_run_id == run.id]
    names = sorted(t.name.rsplit("-", 1)[0] for t in mine)
    assert names.count("acquire") == 3 and names.count("curate-source") == 3 and len(names) == 6
    assert all(t.state.is_completed() for t in mine)

    # `anytalker dashboard` finds this cluster's dashboard
    from anytalker.dashboards import ray_dashboards

    assert dashboard in ray_dashboards()


def test_a_ray_address_without_a_prefect_server_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "cluster.yaml"
    config.write_text("analyze: false\ncluster: {ray_address: '127.0.0.1:1'}\n")
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "anytalker", "curate", str(tmp_path), "-w", str(tmp_path / "w"), "--config", str(config)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    assert "needs a Prefect server: set PREFECT_API_URL" in done.stderr


def test_ray_workers_get_the_api_url_but_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.runners import worker_environment

    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_secret")
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "admin:pass")
    monkeypatch.setenv("ANYTALKER_FACE_MODELS", "/models/faces")
    env = worker_environment()
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:4200/api" and env["ANYTALKER_FACE_MODELS"] == "/models/faces"
    assert "PREFECT_API_KEY" not in env and "PREFECT_API_AUTH_STRING" not in env
    assert "pnu_secret" not in str(env) and "admin:pass" not in str(env)
