"""A local Prefect server, work pool, deployments and worker: what `anytalker dashboard` and the
demo start, the way a team runs Prefect, but bound to 127.0.0.1 and kept in one PREFECT_HOME.

Every process here runs in its own process group, so stopping it stops its children too
(a process worker's flow-run subprocesses, a flow's local Ray).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from anytalker.prefect_env import DEFAULTS

ROOT = Path(__file__).resolve().parents[1]
POOL = "anytalker-process"
BIN = Path(sys.executable).parent


def free_port(preferred: int = 4200) -> int:
    """`preferred` when nothing listens there, else a free port from the OS."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port on 127.0.0.1")


def _environment(home: Path, api_url: str | None = None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, **{k: v for k, v in DEFAULTS.items() if k not in os.environ}, "PREFECT_HOME": str(home)}
    env.pop("PREFECT_API_URL", None)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return {**env, **(extra or {})}


def stop_process(process: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGTERM to the whole group, SIGKILL after `grace_s`."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class LocalServer:
    """A `prefect server start` on 127.0.0.1 and its log file."""

    home: Path
    port: int
    process: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a process that talks to this server."""
        return _environment(self.home, self.api_url, extra)

    def stop(self) -> None:
        stop_process(self.process)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start_server(home: Path, port: int | None = None, timeout_s: float = 240.0) -> LocalServer:
    """Start the server (UI and API) with its SQLite database in `home`; wait until it answers."""
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = home / "server.log"
    cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    # the UI asks the API at PREFECT_UI_API_URL, which otherwise stays at port 4200 whatever --port says
    env = _environment(home, extra={"PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api"})
    with log.open("ab") as sink:
        process = subprocess.Popen(cmd, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    server = LocalServer(home, port, process, log)
    deadline = time.monotonic() + timeout_s
    while not healthy(server.url):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the Prefect server did not start on port {port} (log {log}):\n{tail}")
        time.sleep(1.0)
    return server


def prefect_cli(server: LocalServer, *args: str, env: dict[str, str] | None = None, check: bool = True,
                cwd: Path = ROOT) -> subprocess.CompletedProcess:  # fmt: skip
    """Run the `prefect` command against `server` (no prompts)."""
    return subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", *args], env=server.env(env), cwd=cwd, capture_output=True, text=True,
        check=check,
    )  # fmt: skip


def ensure_work_pool(server: LocalServer, name: str = POOL) -> None:
    """The process work pool the deployments name; created once."""
    if prefect_cli(server, "work-pool", "inspect", name, check=False).returncode != 0:
        prefect_cli(server, "work-pool", "create", name, "--type", "process")


def deploy_all(server: LocalServer, data_root: Path) -> str:
    """`prefect deploy --all` from the repository, with ANYTALKER_DATA filling the paths."""
    done = prefect_cli(server, "deploy", "--all", env={"ANYTALKER_DATA": str(data_root)}, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"prefect deploy --all failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def start_worker(server: LocalServer, log: Path, pool: str = POOL, extra: dict[str, str] | None = None) -> subprocess.Popen:
    """A process worker on `pool`: it runs each flow run in a subprocess of its own."""
    env = server.env({"PREFECT_WORKER_QUERY_SECONDS": "2", **(extra or {})})
    cmd = [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process"]
    with log.open("ab") as sink:
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
