"""What scraping costs, measured against a web server on loopback, as ratios from one run.

    .venv/bin/python benchmarks/scrape.py [--entries 500] [--minutes 2]

1. Sections against whole videos: a talking video of MINUTES minutes (a ../shared clip looped,
   re-encoded with a keyframe every 2 s and the index first, as video sites serve) is fetched
   whole, then as three 5 s sections the way a manifest asks (`tasks.curation.scrape.fetch`): wall
   time, bytes kept on disk and bytes the server sent, and their ratios.
2. Listing: a page with ENTRIES embedded videos is listed flat (`tasks.curation.scrape.list_url`): time
   per entry, and how many media requests the listing made (none is the point).
3. Archive: deciding, for every listed entry, that it was fetched before (a catalog lookup per
   entry, what a nightly rerun does instead of downloading): time per entry.

The server is tests/conftest.py's `LocalSite` (byte ranges, request log, body bytes sent), the
one the tests use.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import LocalSite  # noqa: E402

from tasks.catalog import Catalog  # noqa: E402
from tasks.config import IngestConfig  # noqa: E402
from tasks.curation.scrape import fetch, list_url  # noqa: E402
from tasks.records import InputItem, Section  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "videos" / "PC-AVS__Input_00098.mp4"


def long_video(folder: Path, minutes: float) -> Path:
    out = folder / "long.mp4"
    loops = max(1, int(minutes * 60 / 9.9))
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-stream_loop", str(loops - 1), "-i", str(SHARED), "-c:v", "libx264",
         "-preset", "veryfast", "-g", "50", "-c:a", "aac", "-movflags", "+faststart", str(out)],
        check=True,
    )  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=500, help="embedded videos on the listed page")
    parser.add_argument("--minutes", type=float, default=2.0, help="length of the video fetched whole and in sections")
    args = parser.parse_args()
    if not SHARED.is_file():
        sys.exit(f"needs {SHARED} (../shared/data)")
    config = IngestConfig(download_retries=0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        www = tmp_path / "www"
        www.mkdir()
        video = long_video(www, args.minutes)
        site = LocalSite(www)
        url = f"{site.base}/long.mp4"

        start = time.perf_counter()
        whole = fetch(InputItem(url, url=url), tmp_path / "whole", config)
        whole_s, whole_wire = time.perf_counter() - start, site.bytes_sent
        site.bytes_sent = 0
        start = time.perf_counter()
        kept = 0
        for k, at in enumerate((10.0, 50.0, 90.0)):
            section = Section(at, at + 5.0)
            got = fetch(InputItem(f"{url}#t={at:g},{at + 5:g}", url=url, section=section), tmp_path / f"s{k}", config)
            kept += got.path.stat().st_size
        sections_s, sections_wire = time.perf_counter() - start, site.bytes_sent
        whole_kept = whole.path.stat().st_size
        print(f"video: {args.minutes:g} min, {video.stat().st_size / 1e6:.2f} MB, keyframe every 2 s, moov first")
        print(f"whole fetch:        {whole_s:6.2f} s  kept {whole_kept / 1e6:6.2f} MB  sent {whole_wire / 1e6:6.2f} MB")
        print(f"3 x 5 s sections:   {sections_s:6.2f} s  kept {kept / 1e6:6.2f} MB  sent {sections_wire / 1e6:6.2f} MB")
        print(f"sections / whole: time {sections_s / whole_s:.2f}x, kept bytes {kept / whole_kept:.3f}x, sent bytes "
              f"{sections_wire / whole_wire:.2f}x (footage {15 / (args.minutes * 60):.3f}x)")  # fmt: skip
        print("  (sent: what the server wrote before each client hung up; on loopback the socket buffers take\n"
              "   megabytes of each request yt-dlp's probe and ffmpeg's seeks abandon, so it overstates the wire)")

        tags = "".join(f'<video src="v{i}.mp4"></video>' for i in range(args.entries))
        (www / "page.html").write_text(f"<html><head><title>Many</title></head><body>{tags}</body></html>")
        site.requests.clear()
        page = f"{site.base}/page.html"
        start = time.perf_counter()
        listing = list_url(InputItem(page, url=page), config)
        listing_s = time.perf_counter() - start
        media = sum(r["path"].endswith(".mp4") for r in site.requests)
        print(f"listing {len(listing.entries)} entries: {listing_s:.2f} s, {1000 * listing_s / len(listing.entries):.2f} ms "
              f"per entry, {media} media requests")  # fmt: skip

        with Catalog(tmp_path / "work") as catalog:  # archive keys as a fetch records them ("generic v12")
            keys = [f"generic {Path(e.input).stem}" for e in listing.entries]
            for entry, key in zip(listing.entries, keys, strict=True):
                catalog.record_fetch(entry.input, "0" * 64, {"archive_key": key, "fetched_at": "x"})
            start = time.perf_counter()
            known = sum(catalog.archived(k) is not None for k in keys)
            archive_s = time.perf_counter() - start
        print(f"archive check of {known} entries: {1e6 * archive_s / known:.0f} us per entry")
        site.close()


if __name__ == "__main__":
    main()
