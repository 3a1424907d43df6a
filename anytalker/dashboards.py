"""Where the other dashboards are: Ray's and TensorBoard's, found among this machine's processes.

They start with the work (a Ray cluster with a training run, TensorBoard by hand), so
`anytalker dashboard` looks for them rather than starting them.
"""

from __future__ import annotations

import psutil


def _option(cmdline: list[str], name: str) -> str | None:
    """The value of `--name=value` or `--name value` in a command line."""
    for i, arg in enumerate(cmdline):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(cmdline):
            return cmdline[i + 1]
    return None


def _cmdlines() -> list[list[str]]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info.get("cmdline") or []
        if cmdline:
            found.append(cmdline)
    return found


def ray_dashboards() -> list[str]:
    """URLs of the Ray dashboards running here (a head node runs `dashboard/dashboard.py`)."""
    urls = []
    for cmdline in _cmdlines():
        if any(arg.endswith("dashboard/dashboard.py") for arg in cmdline):
            host = _option(cmdline, "--host") or "127.0.0.1"
            urls.append(f"http://{host}:{_option(cmdline, '--port') or 8265}")
    return sorted(set(urls))


def tensorboards() -> list[str]:
    """URLs of the TensorBoards running here, with the log folder each shows."""
    urls = []
    for cmdline in _cmdlines():
        if any(arg.endswith(("bin/tensorboard", "tensorboard.main")) or arg == "tensorboard" for arg in cmdline[:3]):
            host = _option(cmdline, "--host") or "localhost"
            urls.append(f"http://{host}:{_option(cmdline, '--port') or 6006} ({_option(cmdline, '--logdir')})")
    return sorted(set(urls))
