"""``lcpipe robustness``: how often the measurement errors change each prediction."""

from __future__ import annotations

import argparse

from ._common import (
    add_cleaning_arguments,
    add_input_arguments,
    cleaning_config,
    column_map,
    count,
    jobs,
)

HELP = ("redraw the magnitudes from their error bars K times and report how stable each "
        "model's predictions are")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_input_arguments(p)
    p.add_argument("--model", required=True, metavar="BUNDLE",
                   help="bundle folder, run folder of `lcpipe train`, or 'crts'")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="folder for robustness_objects.parquet and robustness_classes.parquet")
    p.add_argument("-k", "--draws", type=count(1), default=20,
                   help="redraws of every magnitude from N(mag, mag_err) (default 20)")
    p.add_argument("--seed", type=count(0), default=0, help="seed of the redraws (default 0)")
    p.add_argument("-j", "--jobs", type=jobs, default=1,
                   help="processes for the features (default 1)")
    add_cleaning_arguments(p)


def run(args: argparse.Namespace) -> int:
    import shutil
    import tempfile
    from pathlib import Path

    import pyarrow as pa

    from models.bundle import load_bundle
    from models.robustness import error_robustness
    from pipeline.errors import OutputError
    from pipeline.io import write_parquet_atomic
    from pipeline.lightcurves import read_lightcurves

    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise OutputError(out, "exists and is not a folder: give a folder for the tables")
    load_bundle(args.model)  # a bad bundle is refused before any work
    lcs = read_lightcurves(args.input, column_map(args), config=cleaning_config(args))
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".lcpipe-robustness-", dir=out))
    try:
        objects, classes, info = error_robustness(args.model, lcs, scratch, k=args.draws,
                                                  seed=args.seed, n_jobs=args.jobs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    meta = {"lcpipe.robustness": {"bundle": str(args.model), "input": str(args.input),
                                  "draws": args.draws, "seed": args.seed}}
    write_parquet_atomic(pa.Table.from_pandas(objects, preserve_index=False),
                         out / "robustness_objects.parquet", metadata=meta)
    write_parquet_atomic(pa.Table.from_pandas(classes, preserve_index=False),
                         out / "robustness_classes.parquet", metadata=meta)
    print(f"{info['objects']} objects, {args.draws} redraws in {info['seconds']} s")
    for model, g in objects.groupby("model", sort=True):
        print(f"  {model}: predicted class kept in {g['stable_fraction'].mean():.3f} of the "
              f"draws on average; {(g['stable_fraction'] == 1).mean():.3f} of the objects "
              "never change")
    print(f"-> {out}/robustness_objects.parquet, robustness_classes.parquet")
    return 0
