"""Prefect for the flow tests: one temporary API server (and result store) for the session.

``prefect_test_harness`` starts a local server on a temporary SQLite database
(~15-20 s on a small machine, hence the 180 s start-up timeout); it is started
once, for the tests of this folder only. Task results and cache records go to
a temporary folder instead of ``~/.prefect/storage``, so a stale cache record
of an earlier session can never be hit.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def prefect_harness(tmp_path_factory: pytest.TempPathFactory):
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    storage = tmp_path_factory.mktemp("prefect-results")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
        with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: storage}), \
                prefect_test_harness(server_startup_timeout=180):
            yield
