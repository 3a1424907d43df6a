"""Shard writer: WebDataset tars with size and count limits, atomic, resumable, with an index.

Layout of a shard set (any fsspec path: a local folder, s3://..., gs://...):

    DIR/train-000000.tar     complete shards only, never a partial one
    DIR/train-000000.json    its stats: sample keys, counts, bytes, sha256 (written after the tar)
    DIR/val-000000.tar ...
    DIR/index.json           the whole set: per split its shards, counts, hours, identity histogram

A shard is written to `.NAME.tar.part` and renamed when complete, so a reader never sees a
partial one. A shard counts as complete when both its tar and its stats exist; a rerun deletes
leftover parts, keeps complete shards, skips every sample already in one (by key) and numbers
new shards after the last. That is what makes a killed build resumable without duplicates.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field

import fsspec
from webdataset import TarWriter

from shards.schema import SCHEMA_VERSION, Sample, to_members

_SHARD = re.compile(r"^(?P<split>[a-z]+)-(?P<n>\d{6})\.tar$")


def _fs(path: str):
    fs, root = fsspec.core.url_to_fs(path)
    return fs, root.rstrip("/")


def _atomic_json(fs, path: str, obj: dict) -> None:
    part = f"{path.rsplit('/', 1)[0]}/.{path.rsplit('/', 1)[1]}.part"
    with fs.open(part, "wb") as fh:
        fh.write(json.dumps(obj, indent=1, sort_keys=True).encode())
    fs.mv(part, path)


def _sha256(fs, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class EncodedSample:
    """A sample as tar members plus what the shard stats count: small enough to pass between
    processes (the frames are already H.264)."""

    key: str
    members: dict[str, bytes]
    seconds: float
    kind: str
    n_identities: int
    identities: list[str]


def encode_sample(sample: Sample, crf: int = 20) -> EncodedSample:
    return EncodedSample(
        sample.key, to_members(sample, crf=crf), len(sample.video) / sample.fps, sample.kind, sample.n_identities,
        list(sample.meta.get("identities", [])),
    )


@dataclass
class _Open:
    name: str
    part: str
    stream: object
    tar: TarWriter
    keys: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0
    kinds: Counter = field(default_factory=Counter)
    n_identities: Counter = field(default_factory=Counter)
    identities: set[str] = field(default_factory=set)


class ShardWriter:
    """Writes samples of every split into one shard set; use as a context manager."""

    def __init__(self, out: str, max_count: int = 200, max_bytes: int = 512 * 1024**2, crf: int = 20) -> None:
        self.out = out
        self.fs, self.root = _fs(out)
        self.fs.makedirs(self.root, exist_ok=True)
        self.max_count, self.max_bytes, self.crf = max_count, max_bytes, crf
        for leftover in self.fs.glob(f"{self.root}/.*.part"):
            self.fs.rm(leftover)  # a shard a killed run did not finish: its samples are written again
        self.done_keys: set[str] = set()
        self._next: dict[str, int] = {}
        for stats in complete_shards(out):
            self.done_keys.update(stats["keys"])
            m = _SHARD.match(stats["shard"])
            self._next[m["split"]] = max(self._next.get(m["split"], 0), int(m["n"]) + 1)
        self._open: dict[str, _Open] = {}
        self.written = 0

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        self.close()

    def write(self, sample: Sample | EncodedSample, split: str) -> bool:
        """Add a sample to the split's open shard; False when a complete shard already has it."""
        if sample.key in self.done_keys:
            return False
        encoded = sample if isinstance(sample, EncodedSample) else encode_sample(sample, self.crf)
        shard = self._open.get(split) or self._start(split)
        shard.bytes += shard.tar.write({"__key__": encoded.key, **encoded.members})
        shard.keys.append(encoded.key)
        shard.seconds += encoded.seconds
        shard.kinds[encoded.kind] += 1
        shard.n_identities[str(encoded.n_identities)] += 1
        shard.identities.update(encoded.identities)
        self.done_keys.add(encoded.key)
        self.written += 1
        if len(shard.keys) >= self.max_count or shard.bytes >= self.max_bytes:
            self._finish(split)
        return True

    def _start(self, split: str) -> _Open:
        n = self._next.get(split, 0)
        self._next[split] = n + 1
        name = f"{split}-{n:06d}.tar"
        part = f"{self.root}/.{name}.part"
        stream = self.fs.open(part, "wb")
        self._open[split] = _Open(name, part, stream, TarWriter(stream, encoder=False, mtime=0))
        return self._open[split]

    def _finish(self, split: str) -> None:
        shard = self._open.pop(split)
        shard.tar.close()  # closes the stream too
        final = f"{self.root}/{shard.name}"
        self.fs.mv(shard.part, final)
        stats = {
            "shard": shard.name, "split": split, "samples": len(shard.keys), "keys": shard.keys,
            "bytes": self.fs.size(final), "sha256": _sha256(self.fs, final), "seconds": round(shard.seconds, 3),
            "kinds": dict(shard.kinds), "n_identities": dict(shard.n_identities),
            "identities": sorted(shard.identities), "schema": SCHEMA_VERSION,
        }  # fmt: skip
        _atomic_json(self.fs, final[: -len(".tar")] + ".json", stats)

    def close(self) -> None:
        for split in list(self._open):
            self._finish(split)


def complete_shards(out: str) -> list[dict]:
    """Stats of every complete shard (tar and stats both present), in name order."""
    fs, root = _fs(out)
    if not fs.exists(root):
        return []
    names = {p.rsplit("/", 1)[1] for p in fs.ls(root, detail=False)}
    found = []
    for name in sorted(names):
        if _SHARD.match(name) and name[: -len(".tar")] + ".json" in names:
            with fs.open(f"{root}/{name[: -len('.tar')]}.json", "rb") as fh:
                found.append(json.load(fh))
    return found


def write_index(out: str, extra: dict | None = None) -> dict:
    """index.json from the complete shards' stats: what a trainer and `shards inspect` read."""
    fs, root = _fs(out)
    splits: dict[str, dict] = {}
    for stats in complete_shards(out):
        s = splits.setdefault(stats["split"], {
            "shards": [], "samples": 0, "hours": 0.0, "kinds": Counter(), "n_identities": Counter(), "identities": set(),
        })  # fmt: skip
        s["shards"].append({k: stats[k] for k in ("shard", "samples", "bytes", "sha256")})
        s["samples"] += stats["samples"]
        s["hours"] += stats["seconds"] / 3600
        s["kinds"].update(stats["kinds"])
        s["n_identities"].update(stats["n_identities"])
        s["identities"].update(stats["identities"])
    index = {
        "schema": SCHEMA_VERSION,
        "splits": {
            name: {**s, "hours": round(s["hours"], 5), "kinds": dict(s["kinds"]),
                   "n_identities": dict(sorted(s["n_identities"].items())), "identities": sorted(s["identities"])}
            for name, s in sorted(splits.items())
        },  # fmt: skip
        **(extra or {}),
    }
    _atomic_json(fs, f"{root}/index.json", index)
    return index


def read_index(out: str) -> dict:
    fs, root = _fs(out)
    with fs.open(f"{root}/index.json", "rb") as fh:
        return json.load(fh)


def shard_urls(out: str, split: str) -> list[str]:
    """The complete shards of a split as URLs WebDataset opens (fsspec protocol kept)."""
    index = read_index(out)
    base = out.rstrip("/")
    return [f"{base}/{s['shard']}" for s in index["splits"].get(split, {}).get("shards", [])]
