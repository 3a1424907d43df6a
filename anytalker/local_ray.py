"""A one-node Ray cluster on 127.0.0.1, started as `ray start --head` would be on a real head node:
what the cluster test and `benchmarks/curate_ray.py` run the curate flow against."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from anytalker.local_prefect import free_port

RAY = Path(sys.executable).parent / "ray"
# every listener on loopback, and no auth token written to ~/.ray for a throwaway cluster
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}


@contextmanager
def ray_head(cpus: int, dashboard: bool = False) -> Iterator[tuple[str, str | None]]:
    """(address, dashboard URL or None) of a head node with `cpus` CPUs and a small object store;
    `ray stop --force` afterwards."""
    port = free_port(0)
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # Ray's socket paths must stay under 107 bytes
    env = {**os.environ, **LOOPBACK_ENV}
    cmd = [str(RAY), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", f"--num-cpus={cpus}",
           "--num-gpus=0", f"--temp-dir={temp}", "--object-store-memory=300000000", "--disable-usage-stats"]  # fmt: skip
    url = None
    if dashboard:
        dash_port = free_port(0)
        cmd += ["--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}"]
        url = f"http://127.0.0.1:{dash_port}"
    else:
        cmd.append("--include-dashboard=false")
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=180)
    try:
        yield f"127.0.0.1:{port}", url
    finally:
        subprocess.run([str(RAY), "stop", "--force"], env=env, capture_output=True, timeout=120, check=False)
