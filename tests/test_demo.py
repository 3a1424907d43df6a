"""The synthetic demo set: labelled as synthetic, mouths that move with the speech, and the
`anytalker demo` command end to end."""

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np
import pytest

from anytalker.demo_media import FACES, _portrait


def _frames_and_audio(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with av.open(str(path)) as c:
        frames = np.stack([f.to_ndarray(format="gray") for f in c.decode(video=0)])
    pcm = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", "16000", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    return frames, np.frombuffer(pcm, np.float32)


def test_every_file_is_labelled_synthetic(demo_media: Path) -> None:
    names = sorted(p.name for p in demo_media.iterdir())
    assert len(names) == 8 and all(n.startswith("synthetic_") for n in names)
    with av.open(str(demo_media / "synthetic_talker_a.mp4")) as c:
        assert "synthetic" in c.metadata.get("comment", "")


def test_mouth_opens_with_the_speech(demo_media: Path) -> None:
    frames, audio = _frames_and_audio(demo_media / "synthetic_talker_a.mp4")
    _, centre, width = _portrait(FACES["a"])
    x, y, r = int(centre[0]), int(centre[1]), int(0.4 * width)
    darkness = 255.0 - frames[:, y : y + r, x - r : x + r].mean(axis=(1, 2))
    hop = 16000 // 25
    rms = np.array([np.sqrt(np.mean(audio[i * hop : (i + 1) * hop] ** 2)) for i in range(len(frames))])
    corr = np.corrcoef(darkness, rms)[0, 1]
    assert corr > 0.6, corr
    silent, silent_audio = _frames_and_audio(demo_media / "synthetic_silent.mp4")
    assert np.abs(silent_audio).max() < 1e-3
    assert silent[:, y : y + r, x - r : x + r].mean(axis=(1, 2)).std() < 3  # the mouth stays shut


@pytest.mark.slow
def test_demo_runs_the_deployment_chain_and_the_dashboard_shows_it(tmp_path: Path) -> None:
    """`anytalker demo`: a local Prefect server, prefect.yaml deployed, a process worker, and
    curate -> build-shards -> train -> evaluate chained by events. Then `anytalker dashboard` serves those
    runs and headless Chromium shows them (screenshots kept in test-output/)."""
    out = subprocess.run(
        [sys.executable, "-m", "anytalker", "demo", "--workdir", str(tmp_path)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    chain = ("deployments: curate/curate Completed, build_shards/build-shards Completed, train/train Completed, "
             "evaluate/evaluate Completed")
    assert chain in out.stdout, out.stdout[-3000:]
    report = subprocess.run(
        [sys.executable, "-m", "anytalker", "report", str(tmp_path / "curated"), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    items = json.loads(report.stdout)["items"]
    by_name: dict[str, list[dict]] = {}
    for item in items:
        by_name.setdefault(Path(item["source"]).name, []).append(item)
    assert [i["reason"] for i in by_name["synthetic_not_a_video.mp4"]] == ["unreadable"]
    assert [i["reason"] for i in by_name["synthetic_silent.mp4"]] == ["no_speech"]
    assert [i["reason"] for i in by_name["synthetic_two_faces.mp4"]] == ["multi_face"]
    assert [i["verdict"] for i in by_name["synthetic_hard_cut.mp4"]] == ["accepted", "accepted"]
    for key in "abcd":
        assert [i["verdict"] for i in by_name[f"synthetic_talker_{key}.mp4"]] == ["accepted"]
    # the versioned shard set the triggered build wrote, and the run the next trigger trained on it
    (index_path,) = (tmp_path / "shards").glob("set-*/index.json")
    index = json.loads(index_path.read_text())
    assert index_path.parent.name == f"set-{index['set_id']}"
    kinds = Counter()
    for side in index["splits"].values():
        kinds.update(side["kinds"])
    assert kinds["composite"] > 0 and kinds["single"] > 0
    run = tmp_path / "runs" / index_path.parent.name
    assert json.loads((run / "metrics.json").read_text())["step"] == 10
    assert (run / "model" / "transformer" / "config.json").is_file()
    # the evaluation the finished run triggered: the benchmark generated with its model, scored, gated
    (evaluation,) = (run / "eval" / "benchmark").glob("step-*/evaluation.json")
    assert len(list((evaluation.parent / "videos").glob("synthetic_duo_*.mp4"))) == 1
    from tasks.evaluation.metric_store import MetricStore

    with MetricStore(tmp_path / "runs") as store:
        (decision,) = store.decisions()
        reference = store.summary("benchmark-reference", 0, "benchmark")  # the benchmark's own recording
    assert reference["interactivity"] > 0 and reference["identity_similarity"] > 0.5, reference
    assert reference["asd_agreement"] > 0.7, reference  # the demo found Light-ASD in ../shared/models
    assert Path(decision["run"]) == run.resolve() and decision["reason"]
    assert (tmp_path / "runs" / "best").is_symlink() == bool(decision["promoted"])
    assert f"evaluation of {run.name} on benchmark" in out.stdout
    _dashboard_shows_the_runs(tmp_path / ".prefect")


def _dashboard_shows_the_runs(home: Path) -> None:
    import shutil
    import signal
    import time
    import urllib.request

    from anytalker.local_prefect import free_port, healthy

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is missing: setup.sh installs Debian's chromium package")
    port = free_port(4290)
    dash = subprocess.Popen(
        [sys.executable, "-m", "anytalker", "dashboard", "--home", str(home), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    shots = Path(__file__).resolve().parents[1] / "test-output"
    shots.mkdir(exist_ok=True)
    try:
        deadline = time.monotonic() + 240
        while not healthy(url):
            assert dash.poll() is None and time.monotonic() < deadline, "the dashboard's server did not start"
            time.sleep(1)

        def page(path: str, name: str, shows: Callable[[str], bool]) -> str:
            """The page's DOM once its scripts have fetched what `shows` looks for (tried a few
            times with more virtual time: the UI renders asynchronously), and a screenshot of it."""
            cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--disable-background-networking", "--disable-component-update", "--disable-sync",
                   "--no-first-run", "--window-size=1400,1800", "--run-all-compositor-stages-before-draw"]  # fmt: skip
            for budget in (10000, 20000, 40000, 80000):
                budgeted = [*cmd, f"--virtual-time-budget={budget}"]
                dom = subprocess.run([*budgeted, "--dump-dom", url + path], capture_output=True, text=True,
                                     timeout=180).stdout  # fmt: skip
                if shows(dom):
                    break
                time.sleep(2)
            subprocess.run([*budgeted, f"--screenshot={shots / name}", url + path], capture_output=True, timeout=180)
            assert (shots / name).read_bytes()[:4] == b"\x89PNG"
            return dom

        flows = (("curate", "curate"), ("build_shards", "build-shards"), ("train", "train"), ("evaluate", "evaluate"))
        badge = "<span>Completed</span>"  # a run card's state badge (the filter's options say Completed too)
        runs = page("/runs", "dashboard-runs.png", lambda dom: dom.count(badge) >= 4)
        assert "Can't connect to Server API" not in runs
        for flow, deployment in flows:
            assert f">{flow}<" in runs.replace(" ", "") and deployment in runs, flow
        assert runs.count(badge) >= 4, "the deployments' flow runs show as Completed"
        keys = ("curation-funnel", "curation-summary", "curation-histograms", "curation-contact-sheet",
                "curation-progress", "shards-table", "shards-summary", "shards-preview", "shards-progress",
                "training-run", "training-curve", "training-progress", "evaluation", "leaderboard",
                "metrics-over-runs")  # fmt: skip
        artifacts = page("/artifacts", "dashboard-artifacts.png", lambda dom: all(k in dom for k in keys))
        for key in keys:
            assert key in artifacts, key
        for key in ("curation-histograms", "training-curve"):  # a curation plot and a training plot
            request = urllib.request.Request(
                f"{url}/api/artifacts/filter", method="POST", headers={"content-type": "application/json"},
                data=json.dumps({"artifacts": {"key": {"any_": [key]}}, "limit": 1}).encode(),
            )  # fmt: skip
            artifact_id = json.load(urllib.request.urlopen(request, timeout=30))[0]["id"]
            shown = page(f"/artifacts/artifact/{artifact_id}", f"dashboard-{key}.png", lambda dom: "<img" in dom)
            assert '<img src="data:image/png;base64,' in shown, key
    finally:
        dash.send_signal(signal.SIGTERM)
        text = dash.communicate(timeout=60)[0]
    assert f"Prefect UI:  {url}" in text and "Ray dashboard:" in text and "TensorBoard:" in text
    assert not healthy(url), "stopping `anytalker dashboard` must stop its server"
