"""Honouring a takedown: `anytalker forget SOURCE` removes a source from the catalog and disk.

The catalog forgets the source's clips, stage-2 verdicts and provenance, marks its inputs
rejected as `forgotten`, and remembers the source id, its inputs and its archive keys so that
no later run (a nightly playlist rerun, the same file dropped in again) takes it back. The
files go too: its standard clips, their analysis sidecars and the downloaded source. Shard
sets built afterwards no longer contain it; sets already written are not rewritten (build a
new version and retire the old one).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tasks.catalog import Catalog
from tasks.workdir import downloads_dir, source_analysis_dir, source_clips_dir


def forget(workdir: Path, selector: str) -> list[dict]:
    """Forget every source `selector` names (source id or 12+ character prefix, input, URL or
    site video id); returns what was removed, empty when nothing matched."""
    with Catalog(workdir) as catalog:
        gone = catalog.forget(selector)
    downloads = downloads_dir(workdir)
    for entry in gone:
        sid = entry["source_id"]
        for folder in (source_clips_dir(workdir, sid), source_analysis_dir(workdir, sid)):
            shutil.rmtree(folder, ignore_errors=True)
        source = Path(entry["source_path"] or "")
        if downloads in source.parents:  # ours to delete; a user's own file is left where it is
            shutil.rmtree(source.parent, ignore_errors=True)
            entry["deleted_source"] = True
    return gone
