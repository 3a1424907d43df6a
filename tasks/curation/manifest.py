"""Dataset manifests: CSV or JSONL rows naming a video and, optionally, the section wanted.

The field's published lists (HDTF, VoxCeleb2, CelebV-HQ, TalkVid, AnyTalker's benchmark) give
video ids or URLs with time ranges; only those ranges are wanted. A row becomes one input
named `URL#t=START,END` (the W3C media-fragment form), so the same video with two sections is
two inputs, and the section travels into clip ids and times. A row that cannot be read is
rejected with its line number; the other rows go on.

Columns (CSV header row, or JSONL keys): `url` (required: an http(s) URL or a site id such
as `youtube:<id>`), `start` and `end` (seconds, optional), and optionally a face box as
`x0, y0, x1, y1` (pixels of the original video, as CelebV-HQ gives it), kept as provenance.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from tasks.records import InputItem, Reason, Section

MANIFEST_SUFFIXES = (".csv", ".jsonl")
SITE_URLS = {
    "youtube": "https://www.youtube.com/watch?v={}",
    "vimeo": "https://vimeo.com/{}",
    "dailymotion": "https://www.dailymotion.com/video/{}",
    "bilibili": "https://www.bilibili.com/video/{}",
}
BOX_KEYS = ("x0", "y0", "x1", "y1")


class RowError(ValueError):
    """One manifest row that cannot be used; the message says which field and why."""


def is_manifest(arg: str) -> bool:
    return Path(arg).suffix.lower() in MANIFEST_SUFFIXES


def site_url(value: str) -> str:
    """A row's `url`: an http(s) URL as is, or `site:id` turned into the site's watch URL."""
    value = value.strip()
    parsed = urlparse(value)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        return value
    site, sep, ident = value.partition(":")
    if sep and site.lower() in SITE_URLS and ident and "/" not in ident:
        return SITE_URLS[site.lower()].format(ident)
    known = ", ".join(f"{s}:<id>" for s in SITE_URLS)
    raise RowError(f"url {value!r} is neither an http(s) URL nor a site id ({known})")


def with_fragment(url: str, section: Section | None) -> str:
    """The input name of a URL and its section: `URL#t=START,END`."""
    return f"{url}#t={section.start_s:g},{section.end_s:g}" if section else url


def _seconds(row: dict, key: str) -> float | None:
    raw = row.get(key)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise RowError(f"{key} {raw!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise RowError(f"{key} {raw!r} must be a finite number of seconds >= 0")
    return value


def parse_row(row: dict) -> tuple[str, Section | None, list[float] | None]:
    """URL, section and face box of one row, or RowError."""
    if not row.get("url") or not str(row["url"]).strip():
        raise RowError("no url")
    url = site_url(str(row["url"]))
    start, end = _seconds(row, "start"), _seconds(row, "end")
    section = None
    if start is not None or end is not None:
        if end is None:
            raise RowError("start without end (a section needs both)")
        start = start or 0.0
        if end <= start:
            raise RowError(f"end ({end:g}) is not after start ({start:g})")
        section = Section(start, end)
    box = None
    present = [k for k in BOX_KEYS if row.get(k) not in (None, "")]
    if present:
        if len(present) != 4:
            raise RowError(f"a face box needs all of {', '.join(BOX_KEYS)} (got {', '.join(present)})")
        box = [_seconds(row, k) or 0.0 for k in BOX_KEYS]
        if box[2] <= box[0] or box[3] <= box[1]:
            raise RowError(f"face box {box} has no area")
    return url, section, box


def _rows(path: Path) -> Iterator[tuple[int, dict | None, str]]:
    """(line number, row or None, why) for each data row of a CSV or JSONL manifest."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, None, f"not JSON ({exc.msg})"
                continue
            yield (number, row, "") if isinstance(row, dict) else (number, None, "a JSON object per line is expected")
        return
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or "url" not in [f.strip() for f in reader.fieldnames]:
        raise RowError(f"the header row must name a 'url' column (got {reader.fieldnames})")
    for row in reader:
        clean = {(k or "").strip(): (v.strip() if isinstance(v, str) else v) for k, v in row.items()}
        if None in row:  # more cells than the header has
            yield reader.line_num, None, f"{len(row[None])} cell(s) more than the header names"
            continue
        yield reader.line_num, clean, ""


def read_manifest(path: Path) -> list[InputItem]:
    """One input per row: a URL with its section, or a refusal with the row's line number."""
    items: list[InputItem] = []
    try:
        rows = list(_rows(path))
    except (RowError, UnicodeDecodeError, csv.Error) as exc:
        return [InputItem(str(path), refused=Reason.BAD_MANIFEST, detail=f"{path}: {exc}")]
    for number, row, why in rows:
        where = f"{path}:{number}"
        if row is None:
            items.append(InputItem(where, refused=Reason.BAD_MANIFEST, detail=f"line {number}: {why}"))
            continue
        try:
            url, section, box = parse_row(row)
        except RowError as exc:
            items.append(InputItem(where, refused=Reason.BAD_MANIFEST, detail=f"line {number}: {exc}"))
            continue
        origin: dict = {"manifest": str(path), "line": number}
        if box:
            origin["face_box"] = box
        items.append(InputItem(with_fragment(url, section), url=url, section=section, origin=origin))
    return items
