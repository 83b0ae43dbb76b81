"""A real Prefect server for the deployment tests, and the subprocesses that talk to it.

Not ``prefect_test_harness`` (that is tests/flows): here ``prefect server start`` runs as a
subprocess on a free port of 127.0.0.1, with a temporary ``PREFECT_HOME`` (SQLite database,
task results, profiles), and every command of the tests runs as a user would run it, in a
subprocess with ``PREFECT_API_URL`` pointing at that server. Each subprocess is started in
its own process group, and every group still alive is ended in teardown.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a subprocess: no Prefect setting of the caller, ``home`` as
    ``PREFECT_HOME`` (so no profile of the user applies either), ``extra`` on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               # served runners and workers look for runs every second, not every 10 s
               PREFECT_RUNNER_POLL_FREQUENCY="1", PREFECT_WORKER_QUERY_SECONDS="1",
               PYTHONUNBUFFERED="1", **extra)
    return env


@dataclass
class Processes:
    """Subprocesses of a test module, each the leader of its own process group."""

    started: list[subprocess.Popen] = field(default_factory=list)

    def start(self, cmd: list[str], env: dict[str, str], cwd: Path, log: Path
              ) -> subprocess.Popen:
        with open(log, "wb") as out:
            p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        self.started.append(p)
        return p

    def run(self, cmd: list[str], env: dict[str, str], cwd: Path, timeout: float
            ) -> tuple[int, str]:
        """Run to completion; (exit code, stdout and stderr). Past ``timeout`` the whole
        process group is killed and the test fails."""
        p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, text=True)
        self.started.append(p)
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop(p, grace=0)
            out, _ = p.communicate()
            pytest.fail(f"{' '.join(cmd)} ran past {timeout} s:\n{out[-4000:]}")
        self._kill_group(p)  # what it left behind (a flow-run process)
        return p.returncode, out

    @staticmethod
    def _kill_group(p: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(p.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, p: subprocess.Popen, grace: float = 15.0) -> int | None:
        """SIGTERM to the group, then SIGKILL after ``grace`` seconds."""
        if p.poll() is None and grace > 0:
            self._kill_group(p, signal.SIGTERM)
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        self._kill_group(p)
        try:
            return p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return None

    def stop_all(self) -> None:
        for p in reversed(self.started):
            self.stop(p, grace=5.0 if p.poll() is None else 0)


@dataclass
class Server:
    url: str  # PREFECT_API_URL, e.g. http://127.0.0.1:PORT/api
    home: Path
    env: dict[str, str]
    procs: Processes
    log: Path

    def get(self, path: str) -> dict:
        r = httpx.get(f"{self.url}{path}", timeout=30)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: dict) -> list | dict:
        r = httpx.post(f"{self.url}{path}", json=body, timeout=30)
        r.raise_for_status()
        return r.json()

    def deployment(self, name: str) -> dict:
        """A deployment by its full name, ``flow-name/deployment-name``."""
        return self.get(f"/deployments/name/{name}")


@pytest.fixture(scope="session")
def subprocess_env():
    """:func:`clean_env`, for tests that build their own environment."""
    return clean_env


@pytest.fixture(scope="module")
def procs():
    p = Processes()
    yield p
    p.stop_all()


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory: pytest.TempPathFactory, procs: Processes) -> Server:
    """``prefect server start --host 127.0.0.1 --port PORT`` (SQLite under a temporary
    PREFECT_HOME), up and healthy."""
    base = tmp_path_factory.mktemp("prefect-server")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = clean_env(base / "home", PREFECT_API_URL=url)
    log = base / "server.log"
    p = procs.start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1",
                     "--port", str(port)], env=env, cwd=base, log=log)
    deadline = time.monotonic() + 150
    while True:
        if p.poll() is not None:
            pytest.fail(f"prefect server exited ({p.returncode}):\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"prefect server not healthy after 150 s:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)
    return Server(url=url, home=base / "home", env=env, procs=procs, log=log)
