"""Every path inside a curation work directory, in one place.

    WORKDIR/
      catalog.sqlite                  every input, source and clip with its verdict (tasks.catalog)
      downloads/<sha256(input)[:16]>/ a URL's download, keyed by the input so a rerun finds it
      clips/<source[:12]>/<clip>.mp4  standard clips (the kept ones)
      analysis/<source[:12]>/<clip>.npz, .json, .stage2.npz
                                      per-frame arrays, transcript, stage-2 ties
      reports/                        the run's pictures (histograms, contact sheet, shard preview)
      .prefect/                       the embedded Prefect server's home (`anytalker curate`)

Why one module: a takedown has to find everything of a source, and a reader of the layout
should not have to collect it from five stages.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def catalog_path(workdir: Path) -> Path:
    return Path(workdir) / "catalog.sqlite"


def downloads_dir(workdir: Path) -> Path:
    return Path(workdir) / "downloads"


def download_dir(workdir: Path, input_: str) -> Path:
    """Where an input's download lives: keyed by the input (URL, entry or section), so a rerun finds it."""
    return downloads_dir(workdir) / hashlib.sha256(input_.encode()).hexdigest()[:16]


def source_clips_dir(workdir: Path, source_id: str) -> Path:
    return Path(workdir) / "clips" / source_id[:12]


def clip_path(workdir: Path, source_id: str, clip_id: str) -> Path:
    return source_clips_dir(workdir, source_id) / f"{clip_id}.mp4"


def source_analysis_dir(workdir: Path, source_id: str) -> Path:
    return Path(workdir) / "analysis" / source_id[:12]


def sidecar_base(workdir: Path, source_id: str, clip_id: str) -> Path:
    """A clip's analysis files without suffix: `.npz` (per-frame arrays), `.json` (transcript)."""
    return source_analysis_dir(workdir, source_id) / clip_id


def stage2_path(workdir: Path, source_id: str, clip_id: str) -> Path:
    """A stage-2 candidate's ties (voice per face, per-frame labels)."""
    return sidecar_base(workdir, source_id, clip_id).with_suffix(".stage2.npz")


def reports_dir(workdir: Path) -> Path:
    return Path(workdir) / "reports"


def prefect_home(workdir: Path) -> Path:
    """Embedded runs keep Prefect's database beside the work unless PREFECT_HOME says otherwise."""
    return Path(workdir) / ".prefect"
