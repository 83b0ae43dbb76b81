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
}


#: Commands that run a flow (and need a Prefect API).
FLOW_COMMANDS = frozenset({"train", "classify", "reprocess", "demo"})


def _build_parser(only: str | None = None) -> argparse.ArgumentParser:
    from pipeline._version import __version__

    from ._common import add_debug_argument

    parser = argparse.ArgumentParser(
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

    try:
        return int(args._run(args) or 0)
    except LcpipeError as exc:
        if getattr(args, "debug", False):
            raise
        print(f"lcpipe {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lcpipe {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
