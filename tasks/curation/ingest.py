"""Ingest ("scrape"): turn what the user named into local files with content-hash ids.

Inputs are files, folders (recursive), list files (one path, URL or manifest a line),
manifests (CSV/JSONL rows of URL or site id with a section, `tasks/curation/manifest.py`) and http(s)
URLs, a URL with `#t=START,END` meaning that section only. A URL may list several videos (a
playlist, a channel, a page): the flow lists it first (`tasks/curation/scrape.py`). Anything else is
refused with a reason rather than guessed at: an unknown scheme, or a path in a list file that
points outside the folders the user handed us.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from tasks.config import IngestConfig
from tasks.curation.manifest import is_manifest, read_manifest
from tasks.curation.scrape import fetch_with_retries
from tasks.records import Acquired, InputItem, Reason, Rejected, Section
from tasks.workdir import download_dir

LIST_SUFFIXES = (".txt", ".list", ".lst")
URL_SCHEMES = ("http", "https")


def _is_list_file(arg: str) -> bool:
    return arg.startswith("@") or Path(arg).suffix.lower() in LIST_SUFFIXES


def _scheme(arg: str) -> str | None:
    """The URL scheme of an argument, or None for a plain path (Windows drive letters are paths)."""
    parsed = urlparse(arg)
    if parsed.scheme and len(parsed.scheme) > 1 and "://" in arg:
        return parsed.scheme.lower()
    return None


def _within(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _walk(folder: Path, roots: list[Path]) -> Iterator[InputItem]:
    """Every regular, non-hidden file under a folder, sorted, so reruns see the same order."""
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            yield _local(str(Path(dirpath) / name), roots)


def _local(arg: str, roots: list[Path]) -> InputItem:
    """A local path, checked to exist and, through symlinks, to stay under the roots."""
    path = Path(arg).expanduser()
    if not path.exists():
        return InputItem(arg, refused=Reason.NOT_FOUND, detail=f"no such file: {path}")
    real = path.resolve()
    if roots and not _within(real, roots):
        return InputItem(arg, refused=Reason.OUTSIDE_ROOTS, detail=f"{real} is outside {', '.join(map(str, roots))}")
    return InputItem(arg, path=str(real))


def _from_list(list_path: Path, roots: list[Path]) -> Iterator[InputItem]:
    """Lines of a list file; relative paths resolve against the list file's own folder."""
    base = list_path.parent.resolve()
    list_roots = [*roots, base]
    for raw in list_path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        scheme = _scheme(line)
        if scheme is not None:
            yield _url(line, scheme)
            continue
        candidate = Path(line).expanduser()
        if not candidate.is_absolute():
            candidate = base / candidate
        if is_manifest(line):
            if not _within(candidate.resolve(), list_roots):
                yield InputItem(line, refused=Reason.OUTSIDE_ROOTS, detail=f"{candidate.resolve()} is outside the roots")
            else:
                yield from _manifest(candidate)
        elif candidate.is_dir():
            if not _within(candidate.resolve(), list_roots):
                yield InputItem(line, refused=Reason.OUTSIDE_ROOTS, detail=f"{candidate.resolve()} is outside the roots")
            else:
                yield from _walk(candidate, list_roots)
        else:
            item = _local(str(candidate), list_roots)
            yield InputItem(line, path=item.path, refused=item.refused, detail=item.detail)


def _manifest(path: Path) -> list[InputItem]:
    if not path.is_file():
        return [InputItem(str(path), refused=Reason.NOT_FOUND, detail=f"no such manifest: {path}")]
    return read_manifest(path.resolve())


def _url(arg: str, scheme: str) -> InputItem:
    """A URL; `#t=START,END` (a media fragment) asks for that section only."""
    if scheme not in URL_SCHEMES:
        return InputItem(arg, refused=Reason.UNSUPPORTED_SCHEME, detail=f"scheme '{scheme}' is not http(s)")
    url, _, fragment = arg.partition("#")
    if not fragment.startswith("t="):
        return InputItem(arg, url=arg)
    start, _, end = fragment.removeprefix("t=").partition(",")
    try:
        section = Section(float(start or 0), float(end))
    except ValueError:
        return InputItem(arg, refused=Reason.BAD_MANIFEST, detail=f"#{fragment}: a section is #t=START,END in seconds")
    if not 0 <= section.start_s < section.end_s:
        return InputItem(arg, refused=Reason.BAD_MANIFEST, detail=f"#{fragment}: END must be after START")
    return InputItem(arg, url=url, section=section)


def expand_inputs(args: Iterable[str], config: IngestConfig) -> list[InputItem]:
    """Resolve command-line inputs into one item per file or URL, in a stable order.

    The roots are the folders named on the command line, the folders of files named there,
    and `config.roots`; list files may only point inside them (or their own folder), and
    symlinks inside a folder may not lead out of it.
    """
    args = list(args)
    roots = [Path(r).expanduser().resolve() for r in config.roots]
    for arg in args:
        if _scheme(arg) is None and not _is_list_file(arg) and not is_manifest(arg):
            p = Path(arg).expanduser()
            if p.is_dir():
                roots.append(p.resolve())
            elif p.exists():
                roots.append(p.resolve().parent)
    items: list[InputItem] = []
    seen: set[str] = set()
    for arg in args:
        scheme = _scheme(arg)
        if scheme is not None:
            new = [_url(arg, scheme)]
        elif is_manifest(arg):
            new = _manifest(Path(arg).expanduser())
        elif _is_list_file(arg):
            list_path = Path(arg.removeprefix("@")).expanduser()
            if not list_path.is_file():
                new = [InputItem(arg, refused=Reason.NOT_FOUND, detail=f"no such list file: {list_path}")]
            else:
                new = list(_from_list(list_path, roots))
        elif Path(arg).expanduser().is_dir():
            new = list(_walk(Path(arg).expanduser(), [Path(arg).expanduser().resolve(), *roots]))
        else:
            new = [_local(arg, [])]
        for item in new:
            if item.input not in seen:  # the same input string twice is one input
                seen.add(item.input)
                items.append(item)
    return items


def hash_file(path: str | Path, chunk: int = 4 * 1024 * 1024) -> tuple[str, int]:
    """sha256 and size of a file, streamed."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def local_provenance(path: Path) -> dict:
    return {"extractor": "local", "url": str(path), "fetched_at": datetime.now(UTC).isoformat(timespec="seconds")}


def acquire(
    item: InputItem, workdir: Path, config: IngestConfig, on_retry: Callable[[str], None] | None = None
) -> Acquired:
    """Bring one input's bytes to local disk (downloads retried as `tasks.curation.scrape` says) and hash them."""
    if item.refused is not None:
        raise Rejected(item.refused, item.detail)
    if item.url is not None:
        fetched = fetch_with_retries(item, download_dir(workdir, item.input), config, on_retry or (lambda _: None))
        source_id, size = hash_file(fetched.path)
        return Acquired(
            input=item.input, path=str(fetched.path), source_id=source_id, size_bytes=size,
            section=item.section,
            provenance={**fetched.provenance, "archive_key": fetched.archive_key or item.archive_key}, downloaded=True,
        )  # fmt: skip
    assert item.path is not None
    path = Path(item.path)
    if not path.is_file():
        raise Rejected(Reason.NOT_FOUND, f"not a regular file: {path}")
    source_id, size = hash_file(path)
    return Acquired(input=item.input, path=str(path), source_id=source_id, size_bytes=size,
                    provenance=local_provenance(path))  # fmt: skip
