"""Argument helpers shared by subcommands (standard library only)."""

from __future__ import annotations

import argparse


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
    g.add_argument("--min-points", type=int, default=10,
                   help="quarantine objects with fewer points after cleaning (default 10)")
    g.add_argument("--t-min", type=float, default=0.0,
                   help="earliest plausible time, MJD days (default 0)")
    g.add_argument("--t-max", type=float, default=100000.0,
                   help="latest plausible time, MJD days (default 100000)")
    g.add_argument("--conflict-policy", choices=["mean", "first", "drop"], default="mean",
                   help="rows sharing (object, band, t) with different mags: weighted 'mean' "
                        "(default), keep 'first', or 'drop' them all")


def column_map(args: argparse.Namespace):
    """ColumnMap from --preset/--columns (imports the library lazily)."""
    from pipeline.contract import ColumnMap

    return ColumnMap.from_spec(args.preset, args.columns)


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
            logging.getLogger(name).addFilter(_drop_user_error_tracebacks)


def _drop_user_error_tracebacks(record) -> bool:
    """Logging filter: a record about an lcpipe user error loses its traceback."""
    from pipeline.errors import LcpipeError

    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, LcpipeError):
        record.exc_info = None
        record.exc_text = None
    return True
