"""Scraping with yt-dlp: list playlists and channels flat, fetch one entry (or one section of
it), and tell a failure worth retrying from one that is final.

Listing is flat (`extract_flat: in_playlist`): a 10,000-video channel is listed from its pages
without touching a video, cut to `ingest.max_entries` and the `ingest.since` window where the
listing already knows dates. Fetching downloads one entry, or with a section only that range
(yt-dlp's download ranges: ffmpeg reads from the keyframe before the start and copies the
streams, so nothing is re-encoded and the file's t=0 is the section's start).

Retries are ours, not yt-dlp's, so that a 429 or 503 is retried after the Retry-After the
server asked for (or the backoff, whichever is longer), a 404 or a private video is not
retried at all, and every retry shows in the flow's log.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlparse

from tasks.config import IngestConfig, since_date
from tasks.records import InputItem, Reason, Rejected, Section

log = logging.getLogger("anytalker.scrape")
RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504}
PROVENANCE_KEYS = (
    "extractor", "id", "title", "uploader", "channel", "channel_id", "upload_date", "license", "duration",
)  # fmt: skip


def host_of(url: str) -> str:
    return (urlparse(url).hostname or "").lower()


class _YtDlpLog:
    """yt-dlp's messages go to our logger at debug level; its errors reach us as exceptions."""

    def debug(self, msg: str) -> None:
        log.debug(msg)

    info = debug

    def warning(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def error(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)


@contextmanager
def _private_cookies(config: IngestConfig) -> Iterator[str | None]:
    """A private copy of the cookies file: yt-dlp writes cookies back on exit, and the user's
    file must stay as it is. The copy is mode 0600 and deleted afterwards."""
    if not config.cookies_file:
        yield None
        return
    source = Path(config.cookies_file).expanduser()
    if not source.is_file():
        raise Rejected(Reason.DOWNLOAD_FAILED, "ingest.cookies_file does not exist")
    fd, copy = tempfile.mkstemp(prefix="anytalker-cookies-", suffix=".txt")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(source.read_bytes())
        yield copy
    finally:
        Path(copy).unlink(missing_ok=True)


def _params(config: IngestConfig, cookies: str | None) -> dict:
    params: dict = {
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": _YtDlpLog(),
        "socket_timeout": config.download_timeout_s,
        "retries": 0,  # retries and backoff are ours (fetch_with_retries)
        "fragment_retries": 0,
        "extractor_retries": 0,
        "cachedir": False,
    }
    if config.user_agent:
        params["http_headers"] = {"User-Agent": config.user_agent}
    if config.sleep_s:
        params["sleep_interval"] = config.sleep_s
        params["sleep_interval_requests"] = config.sleep_s
    if config.rate_limit_bytes:
        params["ratelimit"] = config.rate_limit_bytes
    if cookies:
        params["cookiefile"] = cookies
    return params


# ---- failures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """What went wrong with one request: whether another try may help, and when."""

    detail: str
    retryable: bool
    retry_after_s: float | None = None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what caused it, through yt-dlp's exc_info and cause links."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        info = getattr(current, "exc_info", None)
        nxt = info[1] if isinstance(info, tuple) and len(info) > 1 else None
        current = nxt or getattr(current, "cause", None) or current.__cause__


def _retry_after(headers: object) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date."""
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    if not value:
        return None
    value = str(value).strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def classify(exc: BaseException) -> Failure:
    """A 429/5xx/408 or a network error is retried (after Retry-After when given); another HTTP
    status, an unsupported page or a video the site says is unavailable is final."""
    from yt_dlp.networking.exceptions import HTTPError, TransportError
    from yt_dlp.utils import ExtractorError

    detail = " ".join(str(exc).removeprefix("ERROR: ").split())
    for link in _chain(exc):
        if isinstance(link, HTTPError):
            status = link.status
            retry_after = _retry_after(getattr(link.response, "headers", None) or {})
            return Failure(f"HTTP {status} {link.reason or ''}".strip(), status in RETRY_STATUSES, retry_after)
        if isinstance(link, TransportError):
            return Failure(detail, True)
    if any(isinstance(link, ExtractorError) for link in _chain(exc)):
        return Failure(detail, False)
    return Failure(detail, True)


# ---- listing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    """What a URL lists: one entry for a video, several for a playlist, channel or page."""

    url: str
    kind: str  # "video" or "playlist"
    title: str
    entries: list[InputItem]
    listed: int  # entries the site returned (up to ingest.max_entries)
    left_out: dict[str, int] = field(default_factory=dict)  # why some listed entries were not taken


def _archive_key(info: dict, section: Section | None = None) -> str | None:
    extractor = info.get("ie_key") or info.get("extractor_key")
    if not extractor or not info.get("id"):
        return None
    key = f"{extractor.lower()} {info['id']}"
    return f"{key} {section.label()}" if section else key


def _entry_date(info: dict) -> str | None:
    if info.get("upload_date"):
        return str(info["upload_date"])
    if info.get("timestamp"):
        return datetime.fromtimestamp(float(info["timestamp"]), UTC).strftime("%Y%m%d")
    return None


def _embedded_file(entry: dict) -> str | None:
    """The media file of a `<video>` the generic extractor found on a page (its best format).

    Pages put new videos first; naming the entry by its file rather than its position keeps
    what was fetched recognisable when a page changes."""
    if entry.get("extractor_key") != "HTML5MediaEmbed":
        return None
    urls = [f.get("url") for f in entry.get("formats") or [] if str(f.get("url", "")).startswith(("http://", "https://"))]
    return urls[-1] if urls else None


def list_url(item: InputItem, config: IngestConfig) -> Listing:
    """List one URL flat. Raises yt-dlp's errors (the caller retries and records them)."""
    import yt_dlp

    assert item.url is not None
    with _private_cookies(config) as cookies:
        params = {**_params(config, cookies), "extract_flat": "in_playlist", "skip_download": True}
        if config.max_entries:
            params["playlistend"] = config.max_entries
        with yt_dlp.YoutubeDL(params) as ydl:
            info = ydl.extract_info(item.url, download=False)
    if info.get("_type") not in ("playlist", "multi_video"):
        entry = InputItem(item.input, url=item.url, section=item.section, archive_key=_archive_key(info, item.section),
                          origin=item.origin)  # fmt: skip
        return Listing(item.url, "video", str(info.get("title") or ""), [entry], 1)
    if item.section is not None:
        raise Rejected(Reason.BAD_MANIFEST, f"{item.url} lists several videos; a section names one video")
    since = since_date(config.since) if config.since else None
    entries: list[InputItem] = []
    left_out: dict[str, int] = {}
    listed = 0
    for position, entry in enumerate(info.get("entries") or [], start=1):
        if entry is None:
            continue
        listed += 1
        date = _entry_date(entry)
        if since and date and date < since:
            left_out["before_since"] = left_out.get("before_since", 0) + 1
            continue
        origin = {**item.origin, "playlist": item.url, "playlist_title": info.get("title"), "playlist_index": position}
        key = _archive_key(entry)
        if entry.get("_type") == "url" and entry.get("url"):
            url = entry.get("webpage_url") or entry["url"]
            entries.append(InputItem(url, url=url, archive_key=key, origin=origin))
        elif media := _embedded_file(entry):  # a page's <video>: the file's own URL, stable when the page changes
            entries.append(InputItem(media, url=media, origin=origin))
        else:  # resolved in the listing, without a URL of its own: fetched as item K of the page
            index = int(entry.get("playlist_index") or position)
            entries.append(InputItem(f"{item.url}#item={index}", url=item.url, playlist_item=index, archive_key=key,
                                     origin=origin))  # fmt: skip
    return Listing(item.url, "playlist", str(info.get("title") or ""), entries, listed, left_out)


# ---- fetching -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    path: Path
    provenance: dict
    archive_key: str | None


def _provenance(info: dict, item: InputItem) -> dict:
    facts = {k: info.get(k) for k in PROVENANCE_KEYS if info.get(k) not in (None, "")}
    facts["extractor"] = info.get("extractor_key") or info.get("extractor")
    facts["url"] = info.get("webpage_url") or info.get("original_url") or item.url
    if item.section:
        facts["section"] = [item.section.start_s, item.section.end_s]
    facts.update({k: v for k, v in item.origin.items() if v is not None})
    facts["fetched_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return facts


def fetch(item: InputItem, dest_dir: Path, config: IngestConfig) -> Fetched:
    """Download one entry (one try) into `dest_dir`: its section only when it has one.

    yt-dlp writes `.part` files and renames when complete, so a killed download never looks
    finished. A video uploaded before `ingest.since` is rejected before its bytes are fetched.
    """
    import yt_dlp
    from yt_dlp.utils import download_range_func

    assert item.url is not None
    dest_dir.mkdir(parents=True, exist_ok=True)
    since = since_date(config.since) if config.since else None
    too_old: list[str] = []

    def window(info: dict, *, incomplete: bool = False) -> str | None:
        date = _entry_date(info)
        if since and date and date < since and not incomplete:
            too_old.append(date)
            return f"uploaded {date}, before ingest.since {since}"
        return None

    with _private_cookies(config) as cookies:
        params = {
            **_params(config, cookies),
            "outtmpl": str(dest_dir / "media.%(ext)s"),
            "format": "bestvideo*+bestaudio/best",
            "merge_output_format": "mp4",
            "noplaylist": item.playlist_item is None,
            "overwrites": True,
            "match_filter": window,
        }
        if item.playlist_item is not None:
            params["playlist_items"] = str(item.playlist_item)
        if item.section is not None:
            params["download_ranges"] = download_range_func(None, [(item.section.start_s, item.section.end_s)])
        with yt_dlp.YoutubeDL(params) as ydl:
            info = ydl.extract_info(item.url, download=True)
    if info.get("_type") in ("playlist", "multi_video"):
        entries = [e for e in info.get("entries") or [] if e]
        if not entries:
            raise Rejected(Reason.DOWNLOAD_FAILED, f"{item.input}: the page no longer has entry {item.playlist_item}")
        info = entries[0]
    if too_old:
        raise Rejected(Reason.OUTSIDE_WINDOW, f"uploaded {too_old[0]}, before ingest.since ({config.since})")
    done = sorted(p for p in dest_dir.glob("media.*") if not p.name.endswith((".part", ".ytdl")))
    if not done:
        raise Rejected(Reason.DOWNLOAD_FAILED, f"{item.input}: yt-dlp reported success but wrote no file")
    return Fetched(done[0], _provenance(info, item), _archive_key(info, item.section))


def with_retries(
    action: Callable[[], object], what: str, config: IngestConfig, on_retry: Callable[[str], None] = log.warning
):
    """Run one network action, retrying what `classify` says may pass later.

    The delay is the exponential backoff or the server's Retry-After, whichever is longer; a
    Retry-After beyond `ingest.max_retry_after_s` is not waited for. A final failure raises
    `Rejected(download_failed)` with the last reason.
    """
    for attempt in range(config.download_retries + 1):
        try:
            return action()
        except Rejected:
            raise
        except Exception as exc:  # yt-dlp raises DownloadError around its own and urllib's errors
            failure = classify(exc)
            if not failure.retryable or attempt == config.download_retries:
                tries = f" after {attempt + 1} tries" if attempt else ""
                raise Rejected(Reason.DOWNLOAD_FAILED, f"{what}: {failure.detail}{tries}") from exc
            delay = config.download_backoff_s * 2**attempt
            if failure.retry_after_s is not None:
                if failure.retry_after_s > config.max_retry_after_s:
                    raise Rejected(
                        Reason.DOWNLOAD_FAILED,
                        f"{what}: {failure.detail}, Retry-After {failure.retry_after_s:.0f} s is over "
                        f"ingest.max_retry_after_s ({config.max_retry_after_s:.0f} s); the next run retries it",
                    ) from exc
                delay = max(delay, failure.retry_after_s)
            on_retry(f"{what}: {failure.detail}; retry {attempt + 1}/{config.download_retries} in {delay:.1f} s")
            time.sleep(delay)
    raise AssertionError("unreachable")


def fetch_with_retries(
    item: InputItem, dest_dir: Path, config: IngestConfig, on_retry: Callable[[str], None] = log.warning
) -> Fetched:
    """`fetch` with retries; a final failure leaves no partial file behind."""
    try:
        return with_retries(lambda: fetch(item, dest_dir, config), item.input, config, on_retry)
    except BaseException:
        shutil.rmtree(dest_dir, ignore_errors=True)
        raise
