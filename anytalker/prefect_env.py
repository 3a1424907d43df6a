"""Prefect settings that must be in the environment before `prefect` is first imported.

Embedded mode (no PREFECT_API_URL) starts a temporary server in the process; its default
start-up timeout (20 s) is too tight on a 2-core machine, and its telemetry only fails offline.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LOG_PRINTS": "true",
}


def configure(home: Path | None = None) -> None:
    """Set defaults the user has not set; `home` becomes PREFECT_HOME unless one is set."""
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    if home is not None and "PREFECT_HOME" not in os.environ:
        home.mkdir(parents=True, exist_ok=True)
        os.environ["PREFECT_HOME"] = str(home)
