"""The temporary Prefect API that flow commands start early (flows/_api.py), for real.

Each check runs in a fresh process with its own PREFECT_HOME: the session's test harness
sets an API for this process, and the early start is for processes without one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = """
import json, os
from flows import _api
api = _api.start()
out = {"started": api.process is not None, "api": api.url}
if api.process is not None:
    pid = api.process.pid
    with api.use():
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL
        with get_client(sync_client=True) as client:
            out["health"] = client.api_healthcheck() is None
        out["url"] = PREFECT_API_URL.value()
    api.stop()
    try:
        os.kill(pid, 0)
        out["alive_after_stop"] = True
    except ProcessLookupError:
        out["alive_after_stop"] = False
print(json.dumps(out))
"""


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(tmp_path / "home"), PYTHONPATH=str(ROOT), **extra)
    return env


def _run(tmp_path: Path, **extra: str) -> dict:
    r = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True,
                       env=_env(tmp_path, **extra), cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_early_server_is_the_api_of_the_run_and_stops(tmp_path):
    out = _run(tmp_path)
    assert out["started"] and out["health"]
    assert out["url"] == out["api"] and out["url"].startswith("http://127.0.0.1:")
    assert out["alive_after_stop"] is False


def test_nothing_started_when_an_api_is_configured(tmp_path):
    out = _run(tmp_path, PREFECT_API_URL="http://127.0.0.1:9/api")
    assert out == {"started": False, "api": None}


def test_nothing_started_when_ephemeral_mode_is_off(tmp_path):
    out = _run(tmp_path, PREFECT_SERVER_EPHEMERAL_ENABLED="false")
    assert out == {"started": False, "api": None}
