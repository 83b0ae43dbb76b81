"""Prefect's temporary API server for one ``lcpipe`` command, started before the heavy imports.

When no ``PREFECT_API_URL`` is configured, Prefect starts a temporary ("ephemeral") API
server the first time a flow needs one: it imports the server code in the calling
process (~3 s) and then waits for a ``uvicorn`` subprocess to come up (~4 s), all before
the flow's first line. A one-shot command (``lcpipe reprocess`` run by cron, ``lcpipe
classify``) pays that on every run. :func:`start` launches the same server (the same
``uvicorn`` command and settings as Prefect's ``SubprocessASGIServer``, on a free
127.0.0.1 port) as the command's first step, so it comes up while lcpipe imports its
modules and checks its inputs; :meth:`TemporaryAPI.use` waits for it and points this
process (and its Dask workers, which receive the settings with every task) at it.

With ``PREFECT_API_URL`` set (a real server, a profile) or ephemeral mode off nothing
is started. If the early server fails, Prefect falls back to starting its own.
"""

import atexit
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

from flows._runtime import prefect_environment

__all__ = ["TemporaryAPI", "start"]


class TemporaryAPI:
    """A temporary Prefect API server process (or nothing, when one is configured).

    Attributes
    ----------
    process : subprocess.Popen or None
        The ``uvicorn`` process, None when no server was started.
    url : str or None
        Its API address, ``http://127.0.0.1:<port>/api``.
    """

    def __init__(self, process: subprocess.Popen | None = None, url: str | None = None):
        self.process = process
        self.url = url

    def ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for ``/health``; False if the server died or is late."""
        import httpx

        if self.process is None:
            return False
        deadline = time.monotonic() + timeout
        with httpx.Client() as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False
                try:
                    if client.get(f"{self.url}/health", timeout=2.0).status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        return False

    @contextlib.contextmanager
    def use(self) -> Iterator[None]:
        """Inside: Prefect's ``PREFECT_API_URL`` is this server (when it came up)."""
        from prefect.settings import (
            PREFECT_API_URL,
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
            temporary_settings,
        )

        if not self.ready(float(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())):
            self.stop()  # Prefect starts its own, as without lcpipe's early start
            yield
            return
        with temporary_settings(updates={PREFECT_API_URL: self.url}):
            yield

    def stop(self) -> None:
        """Terminate the server (5 s grace, then kill)."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start() -> TemporaryAPI:
    """Start a temporary API server unless one is configured; stopped at exit.

    The server process is launched before Prefect is imported here (its import is
    ~1.5 s of the start-up); a ``PREFECT_API_URL`` from the active Prefect profile,
    or ephemeral mode switched off, is checked after and stops it again.

    Returns
    -------
    TemporaryAPI
        ``process`` None when ``PREFECT_API_URL`` is set or ephemeral mode is off.
    """
    import importlib.util

    prefect_environment()
    if os.environ.get("PREFECT_API_URL"):
        return TemporaryAPI()
    spec = importlib.util.find_spec("prefect")
    if spec is None or spec.origin is None:
        return TemporaryAPI()
    port = _free_port()
    # the flags and the command of Prefect's SubprocessASGIServer; the server process
    # reads the user's settings (environment, profile) itself
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
           "PREFECT__SERVER_FINAL": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--app-dir", os.path.dirname(os.path.dirname(
            spec.origin)), "--factory", "prefect.server.api.server:create_app", "--host",
         "127.0.0.1", "--port", str(port), "--log-level", "error", "--lifespan", "on"],
        env=env)
    api = TemporaryAPI(proc, f"http://127.0.0.1:{port}/api")
    atexit.register(api.stop)
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        api.stop()  # a profile names a server, or the user wants none started
        return TemporaryAPI()
    return api
