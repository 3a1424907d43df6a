"""Progress of a flow run, shown twice: a terminal bar and a Prefect progress artifact."""

from __future__ import annotations

import sys

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from tqdm import tqdm


class RunProgress:
    """Counts inputs done (the bar's total) and clips written (its postfix)."""

    def __init__(
        self, total: int, key: str = "curation-progress", desc: str = "sources", unit: str = "src",
        description: str = "Inputs done, in percent",
    ) -> None:  # fmt: skip
        self.total = max(total, 1)
        self.done = 0
        self.clips = 0
        self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=None, dynamic_ncols=True)
        self._artifact = create_progress_artifact(progress=0.0, key=key, description=description)
        self._shown = 0  # whole percent last sent to Prefect

    def input_done(self) -> None:
        """One more input done. The Prefect artifact moves by whole percents only: an API call
        (and a database row and an event) per input cost more than the input itself on small
        sources (benchmarks/curate_scale.py)."""
        self.done += 1
        self._bar.update(1)
        percent = int(100 * self.done / self.total)
        if percent > self._shown:
            self._shown = percent
            update_progress_artifact(self._artifact, progress=float(percent))

    def clips_done(self, n: int) -> None:
        self.clips += n
        self._bar.set_postfix(clips=self.clips)

    def close(self) -> None:
        self._bar.close()
