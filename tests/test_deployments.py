"""prefect.yaml: every deployment's entrypoint loads as a flow and its parameters fit that flow."""

from __future__ import annotations

import inspect
from pathlib import Path

import yaml
from prefect.flows import load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parents[1]


def test_every_deployment_names_a_flow_and_its_parameters() -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = {d["name"] for d in spec["deployments"]}
    assert {"curate", "build-shards", "train"} <= names
    for deployment in spec["deployments"]:
        flow = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
        accepted = set(inspect.signature(flow.fn).parameters)
        assert set(deployment["parameters"]) <= accepted, (deployment["name"], set(deployment["parameters"]) - accepted)
        assert deployment["work_pool"]["name"] == "anytalker-process"
