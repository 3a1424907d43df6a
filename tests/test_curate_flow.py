"""The curate flow, run for real on a Prefect test server: every input accounted for."""

import functools
import http.server
import json
import shutil
import sqlite3
import threading
from collections import Counter
from pathlib import Path

import pytest
from conftest import ffmpeg, make_cut_video, make_video, published_events

from flows.curate import curate
from tasks.catalog import Catalog

ODD_NAME = "it's a \"talk\" — café ünïcode.mp4"


def _rows(workdir: Path) -> dict[str, int]:
    with sqlite3.connect(workdir / "catalog.sqlite") as db:
        return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("inputs", "sources", "clips")}


@pytest.fixture
def web(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


@pytest.mark.slow
def test_bad_inputs_end_rejected_and_the_flow_completes(prefect_server, tmp_path: Path, web) -> None:
    base, www = web
    media = tmp_path / "media"
    media.mkdir()
    good = make_video(media / ODD_NAME, 4.0)
    shutil.copy(good, media / "zz_copy_of_good.mp4")
    full = make_video(tmp_path / "full.mp4", 3.0)
    data = full.read_bytes()
    (media / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (media / "text.mp4").write_text("this is not a video\n" * 20)
    (media / "zero.mp4").write_bytes(b"")
    ffmpeg("-f", "lavfi", "-i", "sine=d=3", "-c:a", "aac", str(media / "audio_only.m4a"))
    make_video(media / "no_audio.mp4", 4.0, audio=False)
    make_cut_video(media / "cuts.mp4", [("0x202020", 4.0), ("0xE0C040", 1.5), ("0x3050D0", 3.5)])
    make_video(www / "remote.mp4", 3.5, size="160x120")
    config = tmp_path / "curate.yaml"
    config.write_text(
        "analyze: false\ningest:\n  download_retries: 1\n  download_backoff_s: 0.1\n  download_timeout_s: 5\n"
    )
    inputs = [str(media), "ftp://example.org/x.mp4", f"{base}/remote.mp4", f"{base}/gone.mp4"]
    work = tmp_path / "work"

    result = curate(inputs, str(work), str(config))

    with Catalog(work) as catalog:
        report = catalog.report()
        samples = {n: [i.as_dict() for i in catalog.items(per_verdict=n)] for n in (2, 9)}
    by_input: dict[str, list[dict]] = {}
    for item in report["items"]:
        by_input.setdefault(Path(item["source"]).name if "://" not in item["source"] else item["source"], []).append(item)
    reason = lambda name: [i["reason"] for i in by_input[name]]  # noqa: E731
    assert reason("truncated.mp4") == ["truncated"]
    assert reason("text.mp4") == ["unreadable"]
    assert reason("zero.mp4") == ["empty_file"]
    assert reason("audio_only.m4a") == ["no_video_stream"]
    assert reason("no_audio.mp4") == ["no_audio"]
    assert reason("ftp://example.org/x.mp4") == ["unsupported_scheme"]
    assert reason(f"{base}/gone.mp4") == ["download_failed"]
    assert reason(f"{base}/remote.mp4") == [None]
    assert [i["verdict"] for i in by_input[ODD_NAME]] == ["accepted"]
    assert reason("zz_copy_of_good.mp4") == ["duplicate"]
    assert reason("cuts.mp4") == [None, "too_short", None]
    accepted = by_input[ODD_NAME][0]
    assert Path(accepted["metrics"]["path"]).is_file() and accepted["metrics"]["n_frames"] == 100

    counts = report["counts"]
    assert counts["inputs"] == 11 and counts["items"] == counts["accepted"] + counts["rejected"]
    # the counts (in SQL) are those of the items, and a sample (the contact sheet's) is their first of each verdict
    by_verdict = {v: [i for i in report["items"] if i["verdict"] == v] for v in ("accepted", "rejected")}
    assert counts["items"] == len(report["items"]) and counts["accepted"] == len(by_verdict["accepted"])
    assert counts["rejected_by_reason"] == dict(sorted(Counter(i["reason"] for i in by_verdict["rejected"]).items()))
    for n, sample in samples.items():
        assert [i for i in sample if i["verdict"] == "accepted"] == by_verdict["accepted"][:n]
        assert [i for i in sample if i["verdict"] == "rejected"] == by_verdict["rejected"][:n]
    assert counts["accepted"] == 4 and counts["rejected_by_reason"]["too_short"] == 1
    assert result["counts"] == counts
    assert not list(work.rglob("*.part"))

    rows = _rows(work)
    clip_times = {p: p.stat().st_mtime_ns for p in work.rglob("clips/**/*.mp4")}
    again = curate(inputs, str(work), str(config))
    assert again["run"]["new_sources"] == 0 and again["run"]["new_clips"] == 0
    assert again["counts"] == counts and _rows(work) == rows
    assert {p: p.stat().st_mtime_ns for p in work.rglob("clips/**/*.mp4")} == clip_times
    # the first run told the build-shards trigger; the rerun, with nothing new, told it nothing
    (event,) = published_events("anytalker.curation.updated", "workdir", str(work.resolve()))
    assert event.payload["new_clips"] == result["run"]["new_clips"] > 0
    assert event.payload["accepted"] == counts["accepted"]


@pytest.mark.slow
def test_shared_footage_through_the_flow(prefect_server, shared_videos: Path, tmp_path: Path) -> None:
    listing = tmp_path / "inputs.txt"
    listing.write_text(
        f"{shared_videos}/face_recognition__short_hamilton_clip.mp4\n{shared_videos}/PySceneDetect__goldeneye-vfr-drop3.mp4\n"
    )
    config = tmp_path / "c.toml"
    config.write_text(f"analyze = false\n[ingest]\nrequire_audio = false\nroots = ['{shared_videos}']\n")
    result = curate([str(listing)], str(tmp_path / "work"), str(config))
    with Catalog(tmp_path / "work") as catalog:
        items = catalog.report()["items"]
    hamilton = [i for i in items if "hamilton" in i["source"]]
    accepted = [i for i in hamilton if i["verdict"] == "accepted"]
    assert len(accepted) == 1 and accepted[0]["start"] == pytest.approx(3.59, abs=0.1)
    assert accepted[0]["end"] == pytest.approx(7.89, abs=0.1)
    assert {i["reason"] for i in hamilton} == {None, "too_short"}
    golden = [i for i in items if "goldeneye" in i["source"] and i["verdict"] == "accepted"]
    assert len(golden) == 2 and all(i["metrics"]["fps"] == 25.0 for i in golden)
    assert result["counts"]["items"] == len(items)
    json.dumps(result)  # the flow's return value is plain data


def test_an_analysis_batch_loses_only_its_bad_clip_and_a_faceless_clip_skips_speech(
    prefect_server, shared_models: Path, tmp_path: Path
) -> None:
    """One task run analyses a batch of clips: a clip whose file vanished becomes that clip's
    failure (recorded as internal_error by the flow) and the next clip is still analysed; that
    clip has no face, so with cheap checks first it is rejected before speech is paid for."""
    from flows.curate import analyze_task
    from tasks.config import CurateConfig
    from tasks.curation.analysis.analyze import ClipAnalysis, ClipFailure
    from tasks.records import Reason

    faceless = make_video(tmp_path / "pattern.mp4", 2.0)
    clips = [{"clip_id": "gone", "source_id": "s", "path": str(tmp_path / "gone.mp4")},
             {"clip_id": "pattern", "source_id": "s", "path": str(faceless)}]  # fmt: skip
    gone, pattern = analyze_task(clips=clips, workdir=tmp_path / "work", config=CurateConfig(), threads=1)
    assert isinstance(gone, ClipFailure) and gone.clip_id == "gone" and gone.error
    assert isinstance(pattern, ClipAnalysis) and pattern.rejected is Reason.NO_FACE
    assert "speech_ratio" not in pattern.metrics and "speech" not in pattern.seconds
    every = analyze_task(clips=clips[1:], workdir=tmp_path / "work", config=CurateConfig(every_metric=True),
                         threads=1)[0]
    assert every.rejected is Reason.NO_FACE and "speech_ratio" in every.metrics


@pytest.mark.slow
def test_a_rejected_clip_is_not_encoded_and_recut_cuts_it_under_new_thresholds(
    prefect_server, shared_videos: Path, shared_models: Path, tmp_path: Path
) -> None:
    """A silent clip is rejected without an encode; its range and metrics stay in the catalog, so
    `anytalker recut` with a lower speech threshold cuts it from the source, once."""
    import subprocess
    import sys

    from tasks.curation.standardize import inspect_clip

    work = tmp_path / "work"
    result = curate([str(shared_videos / "LivePortrait__d3.mp4")], str(work), None)
    assert result["run"]["written_clips"] == 0 and result["run"]["analyzed_clips"] == 1
    with Catalog(work) as catalog:
        (item,) = catalog.report()["items"]
    assert item["reason"] == "no_speech" and "path" not in item["metrics"]
    assert not list(work.rglob("*.mp4"))  # nothing encoded (a local source stays where it is)

    def recut(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "anytalker", "recut", "-w", str(work), *args],
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    same = recut()
    assert same.returncode == 0, same.stderr
    assert "judged 1 clips; verdicts changed: none; 0 clips cut" in same.stdout
    lenient = tmp_path / "lenient.yaml"
    lenient.write_text("verdict: {min_speech_ratio: 0.0}\n")
    done = recut("--config", str(lenient))
    assert done.returncode == 0, done.stderr
    assert "no_speech -> accepted: 1" in done.stdout and "1 clips cut" in done.stdout
    with Catalog(work) as catalog:
        (item,) = catalog.report()["items"]
    assert item["verdict"] == "accepted"
    facts = inspect_clip(Path(item["metrics"]["path"]))
    assert facts["n_frames"] == item["metrics"]["n_frames"] and facts["fps"] == 25.0
    again = recut("--config", str(lenient))
    assert again.returncode == 0 and "verdicts changed: none; 0 clips cut" in again.stdout
