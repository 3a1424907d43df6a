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
    assert {"curate", "build-shards", "train", "evaluate"} <= names
    for deployment in spec["deployments"]:
        flow = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
        accepted = set(inspect.signature(flow.fn).parameters)
        assert set(deployment["parameters"]) <= accepted, (deployment["name"], set(deployment["parameters"]) - accepted)
        assert deployment["work_pool"]["name"] == "anytalker-process"


def test_triggers_chain_curate_to_shards_to_train_to_evaluate() -> None:
    """build-shards waits for the event curate emits, train for the one build_shards emits,
    evaluate for the one train emits, and each trigger fills flow parameters from the event's payload."""
    from flows.events import CURATION_UPDATED, SHARDS_PUBLISHED, TRAINING_FINISHED

    spec = {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    assert spec["curate"]["schedules"][0]["cron"] and "triggers" not in spec["curate"]
    for name, event, payload_key in (("build-shards", CURATION_UPDATED, "workdir"), ("train", SHARDS_PUBLISHED, "shards"),
                                     ("evaluate", TRAINING_FINISHED, "run")):  # fmt: skip
        (trigger,) = spec[name]["triggers"]
        assert trigger["expect"] == [event] and trigger["enabled"]
        flow = load_flow_from_entrypoint(str(ROOT / spec[name]["entrypoint"]))
        assert set(trigger["parameters"]) <= set(inspect.signature(flow.fn).parameters)
        assert f"event.payload.{payload_key}" in str(trigger["parameters"])
    assert spec["build-shards"]["parameters"]["versioned"] is True
    assert spec["train"]["parameters"]["runs_root"].startswith("{{ $ANYTALKER_DATA }}")
    assert spec["evaluate"]["parameters"]["runs_root"] == spec["train"]["parameters"]["runs_root"]
