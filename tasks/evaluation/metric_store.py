"""The evaluation store beside the runs: one SQLite file, queryable with any SQLite client.

    figures(run, step, benchmark, item, metric, identity, value, time)
    promotions(run, step, benchmark, promoted, reason, incumbent, time)

An evaluation's figures are written in one transaction that first removes that run, step and
benchmark's earlier figures: a killed evaluation leaves nothing, a rerun replaces, nothing is
counted twice.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from tasks.evaluation.scoring import Figure

SCHEMA = """
CREATE TABLE IF NOT EXISTS figures (
    run TEXT NOT NULL, step INTEGER NOT NULL, benchmark TEXT NOT NULL, item TEXT NOT NULL,
    metric TEXT NOT NULL, identity TEXT NOT NULL, value REAL NOT NULL, time TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS figures_run ON figures (run, step, benchmark);
CREATE TABLE IF NOT EXISTS promotions (
    run TEXT NOT NULL, step INTEGER NOT NULL, benchmark TEXT NOT NULL, promoted INTEGER NOT NULL,
    reason TEXT NOT NULL, incumbent TEXT, time TEXT NOT NULL
);
"""
STORE_NAME = "evaluations.sqlite"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class MetricStore:
    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if path.is_dir() or not path.suffix:
            path = path / STORE_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=60)
        self._db.row_factory = sqlite3.Row
        self._db.executescript(SCHEMA)

    def __enter__(self) -> MetricStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self._db.close()

    def record(self, run: str, step: int, benchmark: str, figures: list[Figure]) -> None:
        now = _now()
        with self._db:
            self._db.execute("DELETE FROM figures WHERE run = ? AND step = ? AND benchmark = ?", (run, step, benchmark))
            self._db.executemany(
                "INSERT INTO figures VALUES (?,?,?,?,?,?,?,?)",
                [(run, step, benchmark, f.item, f.metric, f.identity, f.value, now) for f in figures],
            )

    def summary(self, run: str, step: int, benchmark: str) -> dict[str, float]:
        """Per metric the mean over items of the overall figure (-1 interactivity left out)."""
        rows = self._db.execute(
            "SELECT metric, AVG(value) AS v FROM figures WHERE run = ? AND step = ? AND benchmark = ? AND identity = 'all'"
            " AND NOT (metric = 'interactivity' AND value = -1) GROUP BY metric ORDER BY metric",
            (run, step, benchmark),
        ).fetchall()
        return {r["metric"]: round(r["v"], 5) for r in rows}

    def evaluations(self, benchmark: str | None = None) -> list[tuple[str, int, str]]:
        """(run, step, benchmark) of every stored evaluation, oldest first."""
        sql = "SELECT run, step, benchmark, MIN(time) AS t FROM figures"
        args: tuple = ()
        if benchmark:
            sql, args = sql + " WHERE benchmark = ?", (benchmark,)
        return [
            (r["run"], r["step"], r["benchmark"])
            for r in self._db.execute(sql + " GROUP BY run, step, benchmark ORDER BY t", args)
        ]

    def record_decision(
        self, run: str, step: int, benchmark: str, promoted: bool, reason: str, incumbent: str | None
    ) -> None:
        with self._db:
            self._db.execute("INSERT INTO promotions VALUES (?,?,?,?,?,?,?)",
                             (run, step, benchmark, int(promoted), reason, incumbent, _now()))  # fmt: skip

    def decisions(self) -> list[dict]:
        return [dict(r) for r in self._db.execute("SELECT * FROM promotions ORDER BY rowid")]
