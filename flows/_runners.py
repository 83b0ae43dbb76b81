"""Task runners of the flows: Prefect's thread pool (default) or a Dask cluster.

The flows move data as file paths, never as tables: under Dask every worker must
see the same paths (a shared filesystem) and only paths and small dicts cross the
scheduler. ``prefect_dask`` is imported only when a Dask runner is asked for.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flows._runtime import prefect_environment
from pipeline.errors import ConfigError

__all__ = ["task_runner", "uses_dask", "worker_api"]


def uses_dask(dask_address: str | None = None, dask_local: int | None = None) -> bool:
    """Whether :func:`task_runner` with these arguments gives a Dask runner.

    Raises
    ------
    ConfigError
        As :func:`task_runner` (checked here without importing Prefect or Dask).
    """
    if dask_address is not None and dask_local is not None:
        raise ConfigError("--dask-address and --dask-local exclude each other: "
                          "give one of them")
    if dask_address is not None and not str(dask_address).strip():
        raise ConfigError("--dask-address: empty scheduler address")
    if dask_local is not None and (isinstance(dask_local, bool) or int(dask_local) != dask_local
                                   or dask_local < 1):
        raise ConfigError(f"--dask-local: needs at least 1 worker (got {dask_local!r})")
    return dask_address is not None or dask_local is not None


def task_runner(dask_address: str | None = None, dask_local: int | None = None) -> Any:
    """The task runner of a flow run: ``flow.with_options(task_runner=task_runner(...))``.

    Parameters
    ----------
    dask_address : str, optional
        Scheduler address of a running Dask cluster (e.g. ``tcp://host:8786``):
        ``prefect_dask.DaskTaskRunner(address=...)``.
    dask_local : int, optional
        Start a temporary ``distributed.LocalCluster`` of this many worker processes
        (one thread each) for the run.

    Returns
    -------
    prefect.task_runners.TaskRunner
        Prefect's ``ThreadPoolTaskRunner(max_workers=2)`` when neither is given (the
        flows' default), else a ``prefect_dask.DaskTaskRunner``.

    Raises
    ------
    ConfigError
        Both options given, an empty address, or ``dask_local < 1``.
    """
    dask = uses_dask(dask_address, dask_local)
    prefect_environment()
    if not dask:
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=2)
    from prefect_dask import DaskTaskRunner

    if dask_address is not None:
        return DaskTaskRunner(address=str(dask_address).strip())
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": int(dask_local), "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": None})


@contextmanager
def worker_api() -> Iterator[None]:
    """Let the Dask workers report to this process's Prefect API.

    Without ``PREFECT_API_URL`` Prefect starts a temporary API server in the process
    that needs one, and a Dask worker is another process: each would start its own
    (~20 s, another writer on the same database). Inside this context the temporary
    server is started here and its address is part of the settings that Prefect sends
    with every task, so the workers use it. A no-op when ``PREFECT_API_URL`` is set
    (workers on other machines need such a server, reachable from them).
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_ENABLED,
        temporary_settings,
    )

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the instance Prefect's own client would start
    server.start()
    with temporary_settings(updates={PREFECT_API_URL: server.api_url}):
        yield
