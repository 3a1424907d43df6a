import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_video

from tasks.config import IngestConfig
from tasks.curation.ingest import acquire, expand_inputs, hash_file
from tasks.records import Reason, Rejected
from tasks.workdir import download_dir


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A static HTTP server on loopback serving a folder."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


def test_folders_are_walked_recursively_in_a_stable_order(tmp_path: Path) -> None:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for name in ("b.mp4", "a.mp4", "sub/c.mov", ".hidden.mp4"):
        (tmp_path / "in" / name).write_bytes(b"x")
    items = expand_inputs([str(tmp_path / "in")], IngestConfig())
    assert [Path(i.input).name for i in items] == ["a.mp4", "b.mp4", "c.mov"]
    assert all(i.path and i.refused is None for i in items)


def test_list_files_hold_paths_and_urls_and_refuse_escapes(tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    (media / "one.mp4").write_bytes(b"1")
    outside = tmp_path / "elsewhere.mp4"
    outside.write_bytes(b"2")
    listing = media / "inputs.txt"
    listing.write_text(
        "# comment\n\none.mp4\n../elsewhere.mp4\nhttps://example.org/v.mp4\nftp://example.org/v.mp4\nmissing.mp4\n"
    )
    items = {i.input: i for i in expand_inputs([str(listing)], IngestConfig())}
    assert items["one.mp4"].path == str((media / "one.mp4").resolve())
    assert items["../elsewhere.mp4"].refused is Reason.OUTSIDE_ROOTS
    assert items["https://example.org/v.mp4"].url == "https://example.org/v.mp4"
    assert items["ftp://example.org/v.mp4"].refused is Reason.UNSUPPORTED_SCHEME
    assert items["missing.mp4"].refused is Reason.NOT_FOUND
    # A configured root lets the list reach outside its own folder.
    allowed = {i.input: i for i in expand_inputs([f"@{listing}"], IngestConfig(roots=[str(tmp_path)]))}
    assert allowed["../elsewhere.mp4"].refused is None


def test_symlinks_may_not_lead_out_of_a_folder(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"s")
    (tmp_path / "in" / "link.mp4").symlink_to(secret)
    (item,) = expand_inputs([str(tmp_path / "in")], IngestConfig())
    assert item.refused is Reason.OUTSIDE_ROOTS


def test_other_schemes_are_refused_and_the_same_input_twice_is_one(tmp_path: Path) -> None:
    f = tmp_path / "v.mp4"
    f.write_bytes(b"v")
    items = expand_inputs(["s3://bucket/v.mp4", "file:///etc/hosts", str(f), str(f)], IngestConfig())
    assert [i.refused for i in items] == [Reason.UNSUPPORTED_SCHEME, Reason.UNSUPPORTED_SCHEME, None]


def test_source_id_is_the_content_hash(tmp_path: Path) -> None:
    a, b = tmp_path / "a.mp4", tmp_path / "copy of a.mp4"
    a.write_bytes(b"same bytes")
    b.write_bytes(b"same bytes")
    got = [acquire(i, tmp_path, IngestConfig()) for i in expand_inputs([str(a), str(b)], IngestConfig())]
    assert got[0].source_id == got[1].source_id == hash_file(a)[0]
    assert got[0].size_bytes == len(b"same bytes")
    with pytest.raises(Rejected) as err:
        acquire(expand_inputs(["gopher://x/y"], IngestConfig())[0], tmp_path, IngestConfig())
    assert err.value.reason is Reason.UNSUPPORTED_SCHEME


def test_http_download_with_yt_dlp(http_root: tuple[str, Path], tmp_path: Path) -> None:
    base, root = http_root
    make_video(root / "clip.mp4", 1.0)
    (item,) = expand_inputs([f"{base}/clip.mp4"], IngestConfig())
    got = acquire(item, tmp_path / "work", IngestConfig())
    assert hash_file(got.path) == hash_file(root / "clip.mp4")
    assert got.input == f"{base}/clip.mp4"
    assert not list((tmp_path / "work").rglob("*.part"))
    assert got.provenance["extractor"] == "Generic" and got.provenance["url"] == f"{base}/clip.mp4" and got.downloaded
    (missing,) = expand_inputs([f"{base}/missing.mp4"], IngestConfig())
    with pytest.raises(Rejected, match="HTTP 404") as err:
        acquire(missing, tmp_path / "work", IngestConfig(download_backoff_s=0.1))
    assert err.value.reason is Reason.DOWNLOAD_FAILED and "tries" not in err.value.detail  # a 404 is not retried
    assert not download_dir(tmp_path / "work", missing.input).exists()  # nothing half-written stays
