"""Argument helpers shared by subcommands (standard library only)."""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Callable


def count(minimum: int) -> Callable[[str], int]:
    """argparse ``type=``: an integer >= ``minimum`` (a bad value is one usage error)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def jobs(text: str) -> int:
    """argparse ``type=``: a process or thread count, >= 1 or -1 (all cores)."""
    value = count(-1)(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be >= 1, or -1 for all cores, got 0")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def positive(text: str) -> float:
    """argparse ``type=``: a finite number > 0."""
    value = _number(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def unit_fraction(text: str) -> float:
    """argparse ``type=``: a number in [0, 1)."""
    value = _number(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def finite(text: str) -> float:
    """argparse ``type=``: a finite number."""
    value = _number(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text}")
    return value


def fractions(text: str) -> list[float]:
    """argparse ``type=``: comma-separated fractions, each in (0, 1]."""
    values = [_number(part.strip()) for part in text.split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError("give one or more fractions, e.g. 0.9,0.7,0.5")
    bad = [v for v in values if not (math.isfinite(v) and 0 < v <= 1)]
    if bad:
        raise argparse.ArgumentTypeError(f"fractions must be in (0, 1], got {bad[0]}")
    return values


def output_folder(path: str):
    """``-o OUTDIR`` of a command writing several tables: refused if it is a file."""
    from pathlib import Path

    from pipeline.errors import OutputError

    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputError(out, "exists and is not a folder: give a folder for the tables")
    return out


@contextlib.contextmanager
def scratch_folder(out, command: str):
    """A hidden scratch folder inside ``out`` (created), removed when the block ends,
    whatever happens: ``out`` never keeps a half-finished intermediate."""
    import shutil
    import tempfile
    from pathlib import Path

    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".lcpipe-{command}-", dir=out))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def add_debug_argument(p: argparse.ArgumentParser) -> None:
    """``--debug`` at any level of a command (``lcpipe forest --debug train`` and
    ``lcpipe forest train --debug`` both work): SUPPRESS keeps a lower level from
    resetting what a higher level set."""
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show tracebacks (and TensorFlow's log) on errors")


def add_input_arguments(p: argparse.ArgumentParser) -> None:
    """IN, --preset and --columns: how to read a light-curve table."""
    p.add_argument("input", metavar="IN",
                   help="light-curve table: Parquet file or directory, or CSV file")
    p.add_argument("--preset", choices=["lcpipe", "crts", "ztf"], default=None,
                   help="column names of a survey export (default: lcpipe contract names)")
    p.add_argument("--columns", default=None, metavar="MAP",
                   help="column mapping overrides, e.g. 't=MJD,mag_err=magerr'")


def add_cleaning_arguments(p: argparse.ArgumentParser) -> None:
    """Options of the cleaning rules."""
    g = p.add_argument_group("cleaning rules")
    g.add_argument("--min-points", type=count(2), default=10,
                   help="quarantine objects with fewer points after cleaning (default 10)")
    g.add_argument("--t-min", type=finite, default=0.0,
                   help="earliest plausible time, MJD days (default 0)")
    g.add_argument("--t-max", type=finite, default=100000.0,
                   help="latest plausible time, MJD days (default 100000)")
    g.add_argument("--conflict-policy", choices=["mean", "first", "drop"], default="mean",
                   help="rows sharing (object, band, t) with different mags: weighted 'mean' "
                        "(default), keep 'first', or 'drop' them all")


def column_map(args: argparse.Namespace):
    """ColumnMap from --preset/--columns (imports the library lazily)."""
    from pipeline.contract import ColumnMap

    return ColumnMap.from_spec(args.preset, args.columns)


def band_list(args: argparse.Namespace) -> list[str] | None:
    """``--bands`` as a list; a band that occurs nowhere in the input is a ConfigError
    (a typo would give empty images or NaN features without a word)."""
    if not args.bands:
        return None
    bands = [b.strip() for b in args.bands.split(",")]
    if any(not b for b in bands) or len(set(bands)) != len(bands):
        from pipeline.errors import ConfigError

        raise ConfigError(f"--bands {args.bands!r}: give distinct band names, comma-separated")
    from pipeline.dmdt import scan_bands
    from pipeline.errors import ConfigError

    found = scan_bands(args.input, column_map(args))
    absent = [b for b in bands if b not in found]
    if absent:
        raise ConfigError(f"--bands: {', '.join(map(repr, absent))} not in {args.input} "
                          f"(its bands: {', '.join(found)})")
    return bands


def cleaning_config(args: argparse.Namespace):
    """CleaningConfig from the cleaning options."""
    from pipeline.validate import CleaningConfig

    return CleaningConfig(min_points=args.min_points, t_min=args.t_min, t_max=args.t_max,
                          conflict_policy=args.conflict_policy)


def prefect_quiet_option(p: argparse.ArgumentParser) -> None:
    """``--quiet``: Prefect's log lines (one per task run) off; the summary still prints."""
    p.add_argument("--quiet", action="store_true",
                   help="hide Prefect's progress log (task runs), print only the summary")


def apply_quiet(args: argparse.Namespace) -> None:
    """Honour ``--quiet`` (before Prefect is imported: it reads its settings then), and
    keep Prefect from logging a traceback for a user error raised inside a flow: the
    command prints it as one line (``--debug`` keeps the traceback)."""
    import os

    if getattr(args, "quiet", False):
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    if not getattr(args, "debug", False):
        import logging

        for name in ("prefect.flow_runs", "prefect.task_runs"):
            logger = logging.getLogger(name)
            logger.addFilter(_drop_user_error_tracebacks)
            if getattr(args, "quiet", False):
                # the command says what failed in one line: the run's own error records
                # would repeat it (a bug still shows its traceback, printed by lcpipe)
                logger.addFilter(_only_critical)


def _only_critical(record) -> bool:
    """Logging filter: keep CRITICAL records only."""
    import logging

    return record.levelno >= logging.CRITICAL


def _drop_user_error_tracebacks(record) -> bool:
    """Logging filter: a record about an lcpipe user error loses its traceback."""
    from pipeline.errors import LcpipeError

    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, LcpipeError):
        record.exc_info = None
        record.exc_text = None
    return True


def add_dask_arguments(p: argparse.ArgumentParser) -> None:
    """``--dask-address ADDR`` / ``--dask-local N``: the flow's tasks on Dask (docs/flows.md)."""
    g = p.add_argument_group("Dask (docs/flows.md, 'Dask'; default: 2 threads in this process)")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--dask-address", default=None, metavar="ADDR",
                   help="run the chunk tasks on a running Dask cluster, e.g. tcp://host:8786 "
                        "(its workers must see the same file paths)")
    x.add_argument("--dask-local", type=count(1), default=None, metavar="N",
                   help="run the chunk tasks on a temporary local Dask cluster of N worker "
                        "processes")


def check_dask_arguments(args: argparse.Namespace) -> bool:
    """Whether the command runs on Dask; bad values raise ConfigError (Prefect not imported)."""
    from flows._runners import uses_dask

    return uses_dask(getattr(args, "dask_address", None), getattr(args, "dask_local", None))


_DASK_N_JOBS_WARNING = "ignore:Inside a Dask worker with daemon=True:UserWarning"


def run_flow(args: argparse.Namespace, flow, **params):
    """Call ``flow(**params)`` with the task runner of ``--dask-address``/``--dask-local``.

    Under Dask the settings get ``n_jobs=1`` (the features of a chunk are computed in its
    task's worker, without a process pool of their own: the Dask workers are the
    parallelism, and may not start processes), the workers use this process's Prefect
    API (:func:`flows._runners.worker_api`) and Dask's own log lines stay below WARNING
    unless ``--debug``. The Prefect API is the temporary server the command started
    early (:mod:`flows._api`), if it started one.
    """
    import contextlib
    import logging
    import os

    from flows._api import TemporaryAPI
    from flows._runners import task_runner, worker_api

    addr, n = getattr(args, "dask_address", None), getattr(args, "dask_local", None)
    runner = task_runner(addr, n)
    with contextlib.ExitStack() as stack:
        stack.enter_context((getattr(args, "_api", None) or TemporaryAPI()).use())
        if not check_dask_arguments(args):
            return flow.with_options(task_runner=runner)(**params)
        if "settings" in params:
            params["settings"] = params["settings"].model_copy(update={"n_jobs": 1})
        if not getattr(args, "debug", False):
            log = logging.getLogger("distributed")
            old = log.level
            log.setLevel(logging.WARNING)
            stack.callback(log.setLevel, old)
            nanny = logging.getLogger("distributed.nanny")
            nanny.addFilter(_drop_slow_exit)
            stack.callback(nanny.removeFilter, _drop_slow_exit)
            # local workers (started from this environment): no warning that a model's own
            # n_jobs (e.g. a bundled forest's) drops to 1 in a daemonic Dask worker
            warn = os.environ.get("PYTHONWARNINGS")
            os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [warn, _DASK_N_JOBS_WARNING]))
            stack.callback(_restore_env, "PYTHONWARNINGS", warn)
        stack.enter_context(worker_api())
        return flow.with_options(task_runner=runner)(**params)


def _restore_env(name: str, value: str | None) -> None:
    import os

    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _drop_slow_exit(record) -> bool:
    """Logging filter: a worker process killed at the end of the run (it did not exit within
    Dask's 4 s, e.g. TensorFlow's shutdown) is not the user's concern; its results are in."""
    return not str(record.msg).startswith("Worker process still alive after")


def prepare_flow_command(args: argparse.Namespace, settings_model: type, data: str,
                         model: str | None = None):
    """What ``train``, ``classify`` and ``reprocess`` check before Prefect starts.

    Builds the settings from the options, checks the Dask options, the input (and the
    bundle, if given), then applies ``--quiet``: a bad value or file gives one line.

    Returns
    -------
    pydantic.BaseModel
        The settings.
    """
    from pipeline.chunks import input_files

    from ._settings import settings_from_args

    settings = settings_from_args(settings_model, args)
    check_dask_arguments(args)
    if model is not None:
        from models.bundle import load_bundle

        load_bundle(model)
    input_files(data)
    apply_quiet(args)
    return settings
