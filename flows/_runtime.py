"""Prefect run-time settings and the code version that keys the task caches.

Imported by the flow modules before Prefect itself, so the settings apply to
the ephemeral API server that Prefect starts when no server is configured.
"""

import functools
import hashlib
import os
from pathlib import Path

__all__ = ["prefect_environment", "code_version"]

_ROOT = Path(__file__).resolve().parents[1]


def prefect_environment() -> None:
    """Set lcpipe's Prefect defaults in ``os.environ`` unless the user set them.

    The ephemeral API server takes ~20 s to start on a small machine, which is
    Prefect's default start-up timeout: lcpipe allows 120 s.
    """
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """lcpipe's version plus a hash of the science code (``pipeline``, ``features``, ``models``).

    Part of every task cache key: any change in the code that computes a chunk's
    images or features invalidates the cached chunks.
    """
    from pipeline._version import __version__

    h = hashlib.sha256()
    for pkg in ("pipeline", "features", "models"):
        for f in sorted((_ROOT / pkg).rglob("*.py")):
            h.update(str(f.relative_to(_ROOT)).encode() + b"\0" + f.read_bytes())
    return f"{__version__}+{h.hexdigest()[:12]}"
