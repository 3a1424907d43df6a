"""The catalog's clips as the shard builder sees them: files, per-frame boxes, identity
embedding, speech regions and words, read once from the catalog and the analysis sidecars."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tasks.catalog import Catalog
from tasks.workdir import sidecar_base


@dataclass
class LibraryClip:
    clip_id: str
    source_id: str
    path: str
    fps: float
    n_frames: int
    width: int
    height: int
    metrics: dict
    verdict: str
    reason: str | None
    boxes: np.ndarray  # (T, 4) clip pixels, NaN where the face is lost
    embedding: np.ndarray | None
    speech_regions: list[list[float]] = field(default_factory=list)  # seconds
    words: list[dict] = field(default_factory=list)
    turns: list[list] = field(default_factory=list)
    identity: str = ""  # set by tasks.dataset.identities
    provenance: dict = field(default_factory=dict)  # where the source came from (catalog), kept in shard meta

    def source_entry(self, **fields: object) -> dict:
        """This clip as one of a sample's `sources` in meta.json: ids, provenance, and `fields`."""
        return {"clip_id": self.clip_id, "source_id": self.source_id, **fields, "provenance": self.provenance}

    def speaking_frames(self) -> np.ndarray:
        """(T,) bool: frames inside the clip's voice activity."""
        on = np.zeros(self.n_frames, bool)
        for a, b in self.speech_regions:
            on[max(0, int(a * self.fps)) : min(self.n_frames, int(np.ceil(b * self.fps)))] = True
        return on


def load_library(workdir: str | Path, verdicts: tuple[str, ...] = ("accepted",)) -> list[LibraryClip]:
    """Analysed clips with these verdicts, in clip-id order (so plans are deterministic)."""
    workdir = Path(workdir)
    clips = []
    with Catalog(workdir) as catalog:
        rows = catalog.analysed_clips(verdicts)
        provenance = catalog.provenance()
    for row in rows:
        base = sidecar_base(workdir, row["source_id"], row["clip_id"])
        npz, text = base.with_suffix(".npz"), base.with_suffix(".json")
        if not npz.is_file() or not row["path"] or not Path(row["path"]).is_file():
            continue
        arrays = np.load(npz)
        info = json.loads(text.read_text()) if text.is_file() else {}
        m = json.loads(row["metrics"])
        clips.append(
            LibraryClip(
                clip_id=row["clip_id"], source_id=row["source_id"], path=row["path"], fps=float(m["fps"]),
                n_frames=int(m["n_frames"]), width=int(m["width"]), height=int(m["height"]), metrics=m,
                verdict=row["verdict"], reason=row["reason"], boxes=arrays["boxes"],
                embedding=arrays["embedding"] if "embedding" in arrays else None,
                speech_regions=info.get("speech_regions", []), words=info.get("words", []), turns=info.get("turns", []),
                provenance=_shard_provenance(provenance.get(row["source_id"], {})),
            )
        )  # fmt: skip
    return clips


SHARD_PROVENANCE = ("url", "extractor", "id", "title", "uploader", "channel", "upload_date", "license", "section",
                    "playlist", "manifest", "line", "face_box", "fetched_at")  # fmt: skip


def _shard_provenance(facts: dict) -> dict:
    """What a shard sample keeps of its source's provenance: enough to audit it and honour a
    takedown, without local details (a local source keeps only its path's name)."""
    if facts.get("extractor") == "local":
        return {"extractor": "local", "name": Path(facts.get("url", "")).name, "fetched_at": facts.get("fetched_at")}
    return {k: facts[k] for k in SHARD_PROVENANCE if k in facts}
