"""The `anytalker` command as a user runs it: a subprocess on Prefect's embedded server."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_video

ANYTALKER = [sys.executable, "-m", "anytalker"]


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return subprocess.run([*ANYTALKER, *args], capture_output=True, text=True, env={**environ, **(env or {})})


def test_help_everywhere() -> None:
    top = _run("--help")
    assert top.returncode == 0 and all(cmd in top.stdout for cmd in ("curate", "report", "demo", "config", "shards"))
    for cmd in ("curate", "report", "demo", "config", "shards"):
        out = _run(cmd, "--help")
        assert out.returncode == 0 and "Usage" in out.stdout, cmd


def test_unknown_config_key_fails_before_any_work(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("standardize:\n  fsp: 24\n")
    out = _run("curate", str(tmp_path), "--workdir", str(tmp_path / "w"), "--config", str(bad))
    assert out.returncode == 2 and "unknown key 'standardize.fsp'" in out.stderr
    assert not (tmp_path / "w" / "catalog.sqlite").exists()


def test_a_missing_model_folder_is_one_clear_error(tmp_path: Path) -> None:
    out = _run(
        "curate", str(tmp_path), "--workdir", str(tmp_path / "w"), env={"ANYTALKER_FACE_MODELS": "/nowhere/face-pack"}
    )
    assert out.returncode == 2
    assert "face model folder not found: /nowhere/face-pack" in out.stderr and "buffalo_l" in out.stderr
    assert not (tmp_path / "w" / "catalog.sqlite").exists()


def test_report_needs_a_catalog(tmp_path: Path) -> None:
    out = _run("report", str(tmp_path))
    assert out.returncode == 2 and "no catalog" in out.stderr


def test_shards_command_errors_are_clear(tmp_path: Path) -> None:
    assert "no catalog" in _run("shards", str(tmp_path), "--out", str(tmp_path / "s")).stderr
    out = _run("shards", str(tmp_path))
    assert out.returncode == 2 and "--out DIR is required" in out.stderr
    out = _run("shards", "inspect", str(tmp_path / "nothing"))
    assert out.returncode == 2 and "no shard set" in out.stderr
    (tmp_path / "catalog.sqlite").touch()
    out = _run("shards", str(tmp_path), "--out", str(tmp_path / "s"), "--identities", "1,9")
    assert out.returncode == 2 and "--identities" in out.stderr


@pytest.mark.slow
def test_curate_then_report_on_the_embedded_server(tmp_path: Path) -> None:
    media = tmp_path / "in"
    media.mkdir()
    make_video(media / "talk.mp4", 3.5)
    (media / "notes.mp4").write_text("not a video")
    work = tmp_path / "work"
    split_only = tmp_path / "split.yaml"
    split_only.write_text("analyze: false\n")
    out = _run("curate", str(media), "--workdir", str(work), "--config", str(split_only))
    assert out.returncode == 0, out.stderr[-2000:]
    assert (work / ".prefect").is_dir()  # embedded Prefect keeps its database beside the work
    data = json.loads(_run("report", str(work), "--json").stdout)
    assert set(data) == {"counts", "items", "sources", "listings"}
    (source,) = [s for s in data["sources"] if s["input"].endswith("talk.mp4")]
    assert source["provenance"]["extractor"] == "local" and source["clips"] == 1 and data["listings"] == []
    assert data["counts"]["accepted"] == 1 and data["counts"]["rejected"] == 1
    for item in data["items"]:
        assert set(item) == {"source", "clip", "start", "end", "verdict", "reason", "metrics"}
    bad = next(i for i in data["items"] if i["verdict"] == "rejected")
    assert bad["source"].endswith("notes.mp4") and bad["reason"] == "unreadable" and bad["clip"] is None
    table = _run("report", str(work))
    assert table.returncode == 0 and "unreadable" in table.stdout and "accepted" in table.stdout
