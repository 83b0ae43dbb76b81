"""``lcpipe simulate``: write a synthetic survey of known classes."""

from __future__ import annotations

import argparse

from ._common import count

HELP = "simulate N labelled light curves on a CRTS-like cadence (Parquet + labels.csv)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``simulate`` options to ``parser``."""
    parser.add_argument("-n", "--n", dest="n", type=count(1), required=True,
                        help="number of light curves (objects)")
    parser.add_argument("-o", "--out", required=True,
                        help="output directory: lightcurves.parquet and labels.csv go there")
    parser.add_argument("--seed", type=count(0), default=0,
                        help="random seed; the output is a function of the seed (default 0)")
    parser.add_argument("--bands", default="V",
                        help="comma-separated passbands from B,g,V,r,i,z; exposures cycle "
                             "through them (default V)")
    parser.add_argument("--classes", default=None,
                        help="comma-separated subset of RRab,RRc,EW,EA,LPV,constant,AGN "
                             "(default all, equal shares)")
    parser.add_argument("--chunk-objects", type=count(1), default=2000,
                        help="objects simulated per chunk; sets memory use, not the output "
                             "(default 2000)")


def run(args: argparse.Namespace) -> int:
    """Simulate and write the survey; print a one-line summary."""
    import time

    from pipeline.simulate import simulate_survey

    classes = None if args.classes is None else [
        c.strip() for c in args.classes.split(",") if c.strip()]
    bands = [b.strip() for b in args.bands.split(",") if b.strip()]
    start = time.perf_counter()
    result = simulate_survey(args.n, args.out, seed=args.seed, chunk_objects=args.chunk_objects,
                             bands=bands, classes=classes)
    elapsed = time.perf_counter() - start
    print(f"wrote {result.n_objects} light curves ({result.n_rows} rows) to "
          f"{result.lightcurves} and labels to {result.labels} in {elapsed:.1f} s "
          f"({result.n_objects / max(elapsed, 1e-9):,.0f} LC/s)")
    return 0
