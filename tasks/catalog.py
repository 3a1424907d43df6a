"""The catalog: every input, source and clip with its facts and verdict, in SQLite.

SQLite because it is a real queryable store that needs no server, every write is a
transaction (a source and all its clips land together or not at all), and anyone can open
`WORKDIR/catalog.sqlite` with the `sqlite3` shell or DuckDB's sqlite scanner.

Rows are keyed by content ids, and every write is an upsert, so a rerun never duplicates.
The invariant the report checks: every input ends as exactly one source or one rejection,
and every item (clip, or input/source rejected before splitting) is accepted or rejected.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tasks.records import ClipResult, Reason, SourceResult
from tasks.workdir import catalog_path

SCHEMA = """
CREATE TABLE IF NOT EXISTS inputs (
    input       TEXT PRIMARY KEY,   -- as the user gave it
    source_id   TEXT,               -- sha256 of its bytes, once known
    path        TEXT,               -- the local file that was read
    size_bytes  INTEGER,
    mtime_ns    INTEGER,            -- with size, lets a rerun skip re-hashing an unchanged file
    verdict     TEXT NOT NULL,      -- 'source' or 'rejected'
    reason      TEXT,
    detail      TEXT,
    updated_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sources (
    source_id   TEXT PRIMARY KEY,
    input       TEXT NOT NULL,      -- the first input that brought these bytes
    path        TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL,
    probe       TEXT,               -- JSON of tasks.records.Probe (or what was learnt before a rejection)
    n_shots     INTEGER,
    verdict     TEXT NOT NULL,      -- 'split' or 'rejected'
    reason      TEXT,
    detail      TEXT,
    updated_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS clips (
    clip_id     TEXT PRIMARY KEY,
    source_id   TEXT NOT NULL REFERENCES sources(source_id),
    shot_index  INTEGER NOT NULL,
    piece_index INTEGER NOT NULL,
    start_s     REAL NOT NULL,
    end_s       REAL NOT NULL,
    path        TEXT,
    verdict     TEXT NOT NULL,      -- 'accepted' or 'rejected'
    reason      TEXT,
    detail      TEXT,
    metrics     TEXT NOT NULL,      -- JSON object of every metric measured on the clip
    updated_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS clips_by_source ON clips(source_id);
CREATE TABLE IF NOT EXISTS provenance (  -- where a source's bytes came from, for audits and takedowns
    source_id   TEXT PRIMARY KEY,
    input       TEXT NOT NULL,
    facts       TEXT NOT NULL,      -- JSON: url, extractor, id, title, uploader, channel, upload_date, license,
                                    -- duration, section, playlist, manifest line, face_box, fetched_at
    updated_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS archive (    -- yt-dlp's download archive, kept here: what was fetched
    key         TEXT PRIMARY KEY,   -- "extractor id", with " START-END" for a section
    input       TEXT NOT NULL,
    source_id   TEXT,
    fetched_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS listings (   -- playlists, channels and pages as last listed
    url         TEXT PRIMARY KEY,
    title       TEXT,
    listed      INTEGER NOT NULL,   -- entries the site returned
    taken       INTEGER NOT NULL,   -- entries that became inputs
    archived    INTEGER NOT NULL,   -- of those, already fetched before (not downloaded again)
    left_out    TEXT NOT NULL,      -- JSON: reason -> count (before_since, ...)
    listed_at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS forgotten (  -- `anytalker forget`: never taken again
    key         TEXT PRIMARY KEY,   -- a source id, an input, or an archive key
    source_id   TEXT NOT NULL,
    forgotten_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stage2 (     -- real multi-person clips: the verdict of the stage-2 path
    clip_id     TEXT PRIMARY KEY REFERENCES clips(clip_id),
    verdict     TEXT NOT NULL,      -- 'accepted' or 'rejected'
    reason      TEXT,
    detail      TEXT,
    metrics     TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
"""

ACCEPTED = "accepted"
REJECTED = "rejected"


# Inputs that end as an item of their own, rejected before splitting: the input itself was
# rejected, or it is the first input of a source rejected for what its bytes are.
_REJECTED_BEFORE_SPLIT = (
    "FROM inputs i LEFT JOIN sources s ON s.source_id = i.source_id"
    f" WHERE i.verdict = '{REJECTED}' OR (s.verdict = '{REJECTED}' AND s.input = i.input)"
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ReportItem:
    """One line of the report: a clip, or an input or source rejected before splitting."""

    source: str
    clip: str | None
    start: float | None
    end: float | None
    verdict: str
    reason: str | None
    metrics: dict

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "clip": self.clip,
            "start": self.start,
            "end": self.end,
            "verdict": self.verdict,
            "reason": self.reason,
            "metrics": self.metrics,
        }


class Catalog:
    """The catalog of one work directory. Not shared across threads: the flow owns it."""

    def __init__(self, workdir: str | Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.path = catalog_path(self.workdir)
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # ---- what is done ---------------------------------------------------------------------

    def source_done(self, source_id: str) -> bool:
        """A source is done when it split, or was rejected for what its bytes are (not our error)."""
        row = self._db.execute("SELECT verdict, reason FROM sources WHERE source_id = ?", (source_id,)).fetchone()
        return row is not None and row["reason"] != Reason.INTERNAL_ERROR.value

    def source_input(self, source_id: str) -> str | None:
        row = self._db.execute("SELECT input FROM sources WHERE source_id = ?", (source_id,)).fetchone()
        return row["input"] if row else None

    def input_done(self, input_: str, path: str | None) -> bool:
        """True when this input already led to a finished source and, for a local file, its
        size and modification time are unchanged (so its bytes need not be hashed again)."""
        row = self._db.execute("SELECT * FROM inputs WHERE input = ?", (input_,)).fetchone()
        if row is None or row["verdict"] != "source" or not self.source_done(row["source_id"]):
            return False
        if path is None:  # a URL: its download is keyed by the URL
            return True
        try:
            stat = Path(path).stat()
        except OSError:
            return False
        return (stat.st_size, stat.st_mtime_ns) == (row["size_bytes"], row["mtime_ns"])

    def archived(self, key: str | None) -> sqlite3.Row | None:
        """The archive row of an "extractor id" key: that video (or section) was fetched before."""
        if not key:
            return None
        return self._db.execute("SELECT * FROM archive WHERE key = ?", (key,)).fetchone()

    def is_forgotten(self, *keys: str | None) -> bool:
        wanted = [k for k in keys if k]
        if not wanted:
            return False
        marks = ",".join("?" * len(wanted))
        return self._db.execute(f"SELECT 1 FROM forgotten WHERE key IN ({marks})", wanted).fetchone() is not None

    # ---- writes ---------------------------------------------------------------------------

    def record_fetch(self, input_: str, source_id: str, provenance: dict) -> None:
        """Provenance of a source (the first input's wins) and its archive entry."""
        with self._transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO provenance VALUES (?,?,?,?)", (source_id, input_, json.dumps(provenance), _now())
            )
            if provenance.get("archive_key"):
                db.execute(
                    "INSERT OR REPLACE INTO archive VALUES (?,?,?,?)",
                    (provenance["archive_key"], input_, source_id, provenance.get("fetched_at") or _now()),
                )

    def record_listing(self, url: str, title: str, listed: int, taken: int, archived: int, left_out: dict) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO listings VALUES (?,?,?,?,?,?,?)",
                (url, title, listed, taken, archived, json.dumps(left_out), _now()),
            )

    def forget(self, selector: str) -> list[dict]:
        """Remove the sources `selector` names (a source id or its first 12+ characters, an input,
        a URL, or a site's video id) from the catalog: their clips, stage-2 verdicts and
        provenance go, their inputs end rejected as `forgotten`, and the archive and the
        forgotten list keep a rerun from fetching them again. Returns what was forgotten
        (source id, inputs, clip paths) so the caller can delete the files."""
        rows = self._db.execute(
            "SELECT DISTINCT s.source_id, s.path FROM sources s"
            " LEFT JOIN inputs i ON i.source_id = s.source_id"
            " LEFT JOIN provenance p ON p.source_id = s.source_id"
            " WHERE s.source_id = ? OR (length(?) >= 12 AND s.source_id LIKE ? || '%') OR i.input = ? OR s.input = ?"
            " OR json_extract(p.facts, '$.url') = ? OR json_extract(p.facts, '$.id') = ?",
            (selector, selector, selector, selector, selector, selector, selector),
        ).fetchall()
        gone = []
        for row in rows:
            sid = row["source_id"]
            inputs = [r["input"] for r in self._db.execute("SELECT input FROM inputs WHERE source_id = ?", (sid,))]
            clips = [r["path"] for r in self._db.execute("SELECT path FROM clips WHERE source_id = ?", (sid,))]
            keys = [r["key"] for r in self._db.execute("SELECT key FROM archive WHERE source_id = ?", (sid,))]
            with self._transaction() as db:
                db.execute("DELETE FROM stage2 WHERE clip_id IN (SELECT clip_id FROM clips WHERE source_id = ?)", (sid,))
                db.execute("DELETE FROM clips WHERE source_id = ?", (sid,))
                db.execute("DELETE FROM provenance WHERE source_id = ?", (sid,))
                db.execute("DELETE FROM sources WHERE source_id = ?", (sid,))
                for key in {sid, *inputs, *keys}:
                    db.execute("INSERT OR REPLACE INTO forgotten VALUES (?,?,?)", (key, sid, _now()))
                db.execute(
                    "UPDATE inputs SET verdict = ?, reason = ?, detail = ?, updated_at = ? WHERE source_id = ?",
                    (REJECTED, Reason.FORGOTTEN.value, f"forgotten on {_now()}", _now(), sid),
                )
            gone.append({"source_id": sid, "source_path": row["path"], "inputs": inputs, "clips": [c for c in clips if c]})
        return gone

    def record_input(
        self,
        input_: str,
        *,
        source_id: str | None = None,
        path: str | None = None,
        size_bytes: int | None = None,
        mtime_ns: int | None = None,
        reason: Reason | None = None,
        detail: str = "",
    ) -> None:
        """Record an input: tied to a source, or rejected with a reason."""
        verdict = "source" if reason is None else REJECTED
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO inputs VALUES (?,?,?,?,?,?,?,?,?)",
                (input_, source_id, path, size_bytes, mtime_ns, verdict,
                 reason.value if reason else None, detail, _now()),
            )  # fmt: skip

    def record_rejected_source(
        self, input_: str, source_id: str, path: str, size_bytes: int, reason: Reason, detail: str, facts: dict
    ) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM clips WHERE source_id = ?", (source_id,))
            db.execute(
                "INSERT OR REPLACE INTO sources VALUES (?,?,?,?,?,?,?,?,?,?)",
                (source_id, input_, path, size_bytes, json.dumps(facts), None, REJECTED, reason.value, detail, _now()),
            )

    def record_source(self, input_: str, result: SourceResult) -> None:
        """A split source and all its clips, in one transaction."""
        acq = result.acquired
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO sources VALUES (?,?,?,?,?,?,?,?,?,?)",
                (acq.source_id, input_, acq.path, acq.size_bytes, json.dumps(result.probe.as_dict()),
                 len(result.shots), "split", None, None, _now()),
            )  # fmt: skip
            for clip in result.clips:
                db.execute("INSERT OR REPLACE INTO clips VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", _clip_row(acq.source_id, clip))

    def record_analysis(self, clip_id: str, metrics: dict, reason: Reason | None, detail: str = "") -> None:
        """A clip's analysis: its metrics merged into the row, and its verdict."""
        with self._transaction() as db:
            row = db.execute("SELECT metrics FROM clips WHERE clip_id = ?", (clip_id,)).fetchone()
            merged = {**json.loads(row["metrics"]), **metrics}
            db.execute(
                "UPDATE clips SET verdict = ?, reason = ?, detail = ?, metrics = ?, updated_at = ? WHERE clip_id = ?",
                (REJECTED if reason else ACCEPTED, reason.value if reason else None, detail, json.dumps(merged),
                 _now(), clip_id),
            )  # fmt: skip

    def record_clip_path(self, clip_id: str, path: str) -> None:
        """A clip cut later (by `anytalker recut`) from its source."""
        with self._transaction() as db:
            db.execute("UPDATE clips SET path = ?, updated_at = ? WHERE clip_id = ?", (path, _now(), clip_id))

    def record_stage2(self, clip_id: str, metrics: dict, reason: Reason | None, detail: str = "") -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO stage2 VALUES (?,?,?,?,?,?)",
                (clip_id, REJECTED if reason else ACCEPTED, reason.value if reason else None, detail,
                 json.dumps(metrics), _now()),
            )  # fmt: skip

    def stage2_rows(self) -> dict[str, sqlite3.Row]:
        return {r["clip_id"]: r for r in self._db.execute("SELECT * FROM stage2").fetchall()}

    # ---- reads ----------------------------------------------------------------------------

    def clips_to_analyze(self) -> list[sqlite3.Row]:
        """Written clips whose analysis has not finished (new ones, or ones a crash interrupted)."""
        return self._db.execute(
            "SELECT clip_id, source_id, path FROM clips WHERE path IS NOT NULL"
            " AND json_extract(metrics, '$.analyzed') IS NULL ORDER BY clip_id"
        ).fetchall()

    def split_sources(self) -> list[sqlite3.Row]:
        """Sources that were split (their clips are in the catalog), with their stored probe."""
        return self._db.execute("SELECT source_id, input, path, probe FROM sources WHERE verdict = 'split'").fetchall()

    def analysed_clips(self, verdicts: tuple[str, ...] = (ACCEPTED,)) -> list[sqlite3.Row]:
        """Analysed clips with one of these verdicts, in clip-id order."""
        marks = ",".join("?" * len(verdicts))
        return self._db.execute(
            f"SELECT clip_id, source_id, start_s, end_s, path, verdict, reason, metrics FROM clips WHERE verdict IN ({marks})"
            " AND json_extract(metrics, '$.analyzed') IS NOT NULL ORDER BY clip_id",
            verdicts,
        ).fetchall()

    def items(self, per_verdict: int | None = None) -> list[ReportItem]:
        """One item per clip, and one per input or source rejected before splitting: those first,
        then the clips, by input and start. With `per_verdict`, only the first that many accepted
        and the first that many rejected (what a contact sheet shows, without reading a million rows)."""
        limit = "" if per_verdict is None else f" LIMIT {int(per_verdict)}"
        items: list[ReportItem] = []
        rows = self._db.execute(
            "SELECT i.input, i.verdict AS iv, i.reason AS ir, i.detail AS idt, s.reason AS sr, s.detail AS sdt, s.probe"
            f" {_REJECTED_BEFORE_SPLIT} ORDER BY i.input" + limit
        ).fetchall()
        for r in rows:
            if r["iv"] == REJECTED:
                items.append(ReportItem(r["input"], None, None, None, REJECTED, r["ir"], {"detail": r["idt"]}))
            else:
                facts = {"detail": r["sdt"], **json.loads(r["probe"] or "{}")}
                items.append(ReportItem(r["input"], None, None, None, REJECTED, r["sr"], facts))
        query = (
            "SELECT c.*, s.input AS input, s.path AS source_path FROM clips c JOIN sources s USING (source_id)"
            " WHERE c.verdict IN ({}) ORDER BY s.input, c.start_s" + limit
        )
        if per_verdict is None:
            clips = self._db.execute(query.format(f"'{ACCEPTED}', '{REJECTED}'")).fetchall()
        else:
            wanted = per_verdict - len(items)  # rejected clips come after the inputs rejected before splitting
            clips = self._db.execute(query.format(f"'{ACCEPTED}'")).fetchall()
            clips += self._db.execute(query.format(f"'{REJECTED}'")).fetchall()[: max(wanted, 0)]
        for c in clips:
            metrics = json.loads(c["metrics"])
            if c["detail"]:
                metrics["detail"] = c["detail"]
            if c["path"]:
                metrics["path"] = c["path"]
            else:  # not encoded (rejected by analysis): where to see it
                metrics["source_path"] = c["source_path"]
            items.append(
                ReportItem(c["input"], c["clip_id"], c["start_s"], c["end_s"], c["verdict"], c["reason"], metrics)
            )
        return items

    def counts(self) -> dict:
        """Inputs, sources, clips, items (as `items` lists them) by verdict and reason: counted in
        SQL, so the end of a run over a million sources reads no row into memory."""
        one = lambda sql: self._db.execute(sql).fetchone()[0]  # noqa: E731
        rejected_before = (
            f"SELECT CASE WHEN i.verdict = '{REJECTED}' THEN i.reason ELSE s.reason END AS reason"
            f" {_REJECTED_BEFORE_SPLIT}"
        )
        by_reason = dict(self._db.execute(
            f"SELECT reason, COUNT(*) FROM ({rejected_before} UNION ALL SELECT c.reason FROM clips c"
            f" JOIN sources s USING (source_id) WHERE c.verdict = '{REJECTED}') GROUP BY reason ORDER BY reason"
        ).fetchall())  # fmt: skip
        accepted = one(f"SELECT COUNT(*) FROM clips JOIN sources USING (source_id) WHERE clips.verdict = '{ACCEPTED}'")
        rejected = sum(by_reason.values())
        stage2 = self._db.execute("SELECT verdict, reason FROM stage2").fetchall()
        return {
            "inputs": one("SELECT COUNT(*) FROM inputs"),
            "sources": one("SELECT COUNT(*) FROM sources"),
            "clips": one("SELECT COUNT(*) FROM clips"),
            "items": accepted + rejected,
            "accepted": accepted,
            "rejected": rejected,
            "rejected_by_reason": by_reason,
            "stage2": {
                "accepted": sum(r["verdict"] == ACCEPTED for r in stage2),
                "rejected_by_reason": dict(sorted(Counter(r["reason"] for r in stage2 if r["reason"]).items())),
            },
            "accepted_hours": round(
                one(f"SELECT COALESCE(SUM(end_s - start_s), 0) FROM clips WHERE verdict = '{ACCEPTED}'") / 3600, 4
            ),
        }

    def scores(self, keys: tuple[str, ...]) -> dict[str, dict[str, list[float]]]:
        """Each metric in `keys` of every clip that has it, by verdict: what the histograms plot
        (one number per clip and key read, not whole rows)."""
        found: dict[str, dict[str, list[float]]] = {k: {ACCEPTED: [], REJECTED: []} for k in keys}
        columns = ", ".join(f"json_extract(metrics, '$.{k}')" for k in keys)
        for verdict, *values in self._db.execute(f"SELECT verdict, {columns} FROM clips"):
            for key, value in zip(keys, values, strict=True):
                if value is not None and verdict in found[key]:
                    found[key][verdict].append(value)
        return found

    def provenance(self) -> dict[str, dict]:
        """Source id -> where its bytes came from."""
        return {r["source_id"]: json.loads(r["facts"]) for r in self._db.execute("SELECT * FROM provenance")}

    def sources(self, limit: int | None = None) -> list[dict]:
        """One row per source (the first `limit` by input): its first input, verdict, clip counts
        and provenance."""
        rows = self._db.execute(
            "SELECT s.source_id, s.input, s.verdict, s.reason, p.facts,"
            " SUM(c.verdict = 'accepted') AS accepted, COUNT(c.clip_id) AS clips"
            " FROM sources s LEFT JOIN clips c USING (source_id) LEFT JOIN provenance p USING (source_id)"
            " GROUP BY s.source_id ORDER BY s.input" + ("" if limit is None else f" LIMIT {int(limit)}")
        ).fetchall()
        return [
            {"source_id": r["source_id"], "input": r["input"], "verdict": r["verdict"], "reason": r["reason"],
             "clips": r["clips"], "accepted": r["accepted"] or 0, "provenance": json.loads(r["facts"] or "{}")}
            for r in rows
        ]  # fmt: skip

    def listings(self) -> list[dict]:
        return [
            {**dict(r), "left_out": json.loads(r["left_out"])}
            for r in self._db.execute("SELECT * FROM listings ORDER BY url")
        ]

    def report(self) -> dict:
        """Everything: counts and every item, source and listing (`anytalker report`)."""
        items = self.items()
        return {
            "counts": self.counts(),
            "items": [i.as_dict() for i in items],
            "sources": self.sources(),
            "listings": self.listings(),
        }



def _clip_row(source_id: str, clip: ClipResult) -> tuple:
    plan = clip.plan
    verdict = ACCEPTED if clip.rejected is None else REJECTED
    metrics = {"duration_s": round(plan.length_s, 4), **clip.metrics}
    return (
        plan.clip_id, source_id, plan.shot_index, plan.piece_index, plan.start_s, plan.end_s, clip.path,
        verdict, clip.rejected.value if clip.rejected else None, clip.detail, json.dumps(metrics), _now(),
    )  # fmt: skip
