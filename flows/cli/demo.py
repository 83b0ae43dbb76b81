"""``lcpipe demo``: run the pipeline on the bundled CRTS sample."""

from __future__ import annotations

import argparse

HELP = "run the main job on the bundled CRTS sample (no download, no server)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", default="lcpipe-out", metavar="OUTDIR",
                   help="output directory (default ./lcpipe-out)")


def run(args: argparse.Namespace) -> int:
    from pipeline.demo import run_demo

    s = run_demo(args.output)
    v, d = s["validate"], s["dmdt"]
    print(f"validate: {v['rows_in']} rows in, {v['rows_out']} out; dropped {v['rows_dropped']}; "
          f"merged {v['rows_merged']}; {v['objects_out']}/{v['objects_in']} objects kept")
    print(f"dmdt: {d['objects']} images of {d['shape'][0]}x{d['shape'][1]}x{d['shape'][2]} "
          f"({d['bins']}, norm {d['norm']}), {d['pairs']} pairs")
    print(f"outputs in {args.output}/: validated/lightcurves.parquet, validated/quarantine.parquet,"
          f" validated/summary.json, dmdt.parquet")
    return 0
