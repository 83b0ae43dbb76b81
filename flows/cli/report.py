"""``lcpipe report``: print the model comparison of a run from a report folder."""

import argparse

HELP = "print the model comparison table of a report folder (latest run by default)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", metavar="DIR",
                   help="report folder, or the run folder of `lcpipe train` (DIR/reports)")
    p.add_argument("--run-id", default=None, help="run to show (default: the latest)")
    p.add_argument("--runs", action="store_true", help="list the runs instead")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipeline.reports import comparison_markdown, list_runs

    d = Path(args.directory)
    if (d / "reports" / "runs").is_dir():
        d = d / "reports"
    if args.runs:
        runs = list_runs(d)
        cols = ["run_id", "flow", "status", "started_utc", "objects_in", "objects_classified"]
        print(runs[cols].to_string(index=False))
        return 0
    print(comparison_markdown(d, args.run_id))
    return 0
