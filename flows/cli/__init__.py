"""``lcpipe`` command line: one subcommand per module in this package.

Each subcommand module defines ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int``, and imports only the standard library at import
time, so that ``lcpipe CMD --help`` starts fast. Heavy imports (pandas,
numba, TensorFlow, Prefect) happen inside ``run``.

Errors that are the user's to fix (:class:`pipeline.errors.LcpipeError`) are
printed as one line, ``lcpipe CMD: error: ...``, with exit code 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
from collections.abc import Sequence

__all__ = ["main", "COMMANDS"]

#: subcommand name -> module (relative to this package). Add new commands here.
COMMANDS: dict[str, str] = {
    "validate": ".validate",
    "dmdt": ".dmdt",
    "rpca": ".rpca",
    "simulate": ".simulate",
    "demo": ".demo",
    "cnn": ".cnn",
    "features": ".features",
    "forest": ".forest",
    "train": ".train",
    "classify": ".classify",
    "report": ".report",
    "serve": ".serve",
    "reprocess": ".reprocess",
    "robustness": ".robustness",
    "explain": ".explain",
}


#: Arguments that name a command's inputs (files or folders it reads, never writes).
INPUT_ARGS = ("input", "data", "labels", "model", "features", "survey")

#: Commands that run a flow (and need a Prefect API).
FLOW_COMMANDS = frozenset({"train", "classify", "reprocess", "demo"})


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (the usage is in ``--help``)."""

    def error(self, message: str):  # noqa: D102 - argparse API
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _build_parser(only: str | None = None) -> argparse.ArgumentParser:
    from pipeline._version import __version__

    from ._common import add_debug_argument

    parser = _Parser(
        prog="lcpipe",
        description="Light-curve classification pipeline (dm-dt images, robust PCA, RF and CNN).",
    )
    parser.add_argument("--version", action="version", version=f"lcpipe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in COMMANDS.items():
        if only is not None and name != only:
            # still list it in the top-level help, cheaply
            sub.add_parser(name, add_help=False)
            continue
        try:
            mod = importlib.import_module(modname, __name__)
        except ImportError as exc:  # an optional part missing must not break the others
            sub.add_parser(name, help=f"(unavailable: {exc})", add_help=False)
            continue
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        add_debug_argument(p)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lcpipe`` command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    only = argv[0] if argv and argv[0] in COMMANDS else None
    api = None
    if only in FLOW_COMMANDS and not {"-h", "--help"} & set(argv):
        import os

        from flows import _api

        if "--quiet" in argv:  # Prefect reads its settings once, in _api.start
            os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        api = _api.start()  # Prefect's temporary API comes up while the rest loads
    parser = _build_parser(only)
    args = parser.parse_args(argv)
    args._api = api
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0 if not argv else 2
    import os

    from pipeline.errors import LcpipeError

    if getattr(args, "debug", False):  # TensorFlow's C++ log too (off by default)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")

    import signal

    from pipeline.io import check_place, protect_inputs

    previous = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM unwinds like Ctrl-C: temporary files are removed, workers stopped
        previous = signal.signal(signal.SIGTERM, _terminate)

    inputs = [v for k in INPUT_ARGS if isinstance(v := getattr(args, k, None), str)]
    try:
        with protect_inputs(inputs):  # no output may be written over an input
            if isinstance(out := getattr(args, "output", None), str):
                check_place(out)  # before any work (a flow would find out after ingest)
            return int(args._run(args) or 0)
    except LcpipeError as exc:
        if getattr(args, "debug", False):
            raise
        print(f"lcpipe {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        # a parameter refused where the estimator declares it (scikit-learn's
        # _parameter_constraints): its own message, one line
        if getattr(args, "debug", False) or type(exc).__name__ != "InvalidParameterError":
            raise
        print(f"lcpipe {args.command}: error: {str(exc).strip().splitlines()[0]}",
              file=sys.stderr)
        return 2
    except OSError as exc:  # a path the system refuses: one line naming it
        if getattr(args, "debug", False):
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"lcpipe {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # SIGINT, or SIGTERM through _terminate
        _stop_workers()
        term = isinstance(exc, _Terminated)
        print(f"lcpipe {args.command}: {'terminated' if term else 'interrupted'}",
              file=sys.stderr)
        return 143 if term else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that cleanup runs as for Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise _Terminated()


def _stop_workers() -> None:
    """Stop the feature worker processes of an interrupted run (if any were started)."""
    api = sys.modules.get("features.api")
    if api is not None:
        api.shutdown_pools()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
