"""``lcpipe validate``: clean a light-curve table, counting every removed row."""

from __future__ import annotations

import argparse

from ._common import add_cleaning_arguments, add_input_arguments, cleaning_config, column_map

HELP = "validate and clean a light-curve table; write clean table, quarantine and summary"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_input_arguments(p)
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="directory for lightcurves.parquet, quarantine.parquet, summary.json")
    add_cleaning_arguments(p)


def run(args: argparse.Namespace) -> int:
    from pipeline.validate import validate_file

    s = validate_file(args.input, args.output, column_map(args), cleaning_config(args))
    dropped = ", ".join(f"{k} {v}" for k, v in s["rows_dropped"].items()) or "none"
    merged = ", ".join(f"{k} {v}" for k, v in s["rows_merged"].items()) or "none"
    quar = ", ".join(f"{k} {v}" for k, v in s["objects_quarantined"].items()) or "none"
    print(f"rows: {s['rows_in']} in, {s['rows_out']} out; dropped: {dropped}; merged: {merged}")
    print(f"objects: {s['objects_in']} in, {s['objects_out']} out; quarantined: {quar}")
    print(f"wrote {args.output}/lightcurves.parquet, quarantine.parquet, summary.json")
    return 0
