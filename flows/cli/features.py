"""``lcpipe features``: one row of named light-curve features per object."""

from __future__ import annotations

import argparse

from ._common import (
    add_cleaning_arguments,
    add_input_arguments,
    band_list,
    cleaning_config,
    column_map,
    count,
    jobs,
    positive,
)

HELP = "compute light-curve features (statistics, period, Fourier, colours) per object"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_input_arguments(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT.parquet")
    p.add_argument("--bands", default=None,
                   help="comma-separated band order (default: all bands found, sorted)")
    p.add_argument("--period-min", type=positive, default=0.05,
                   help="shortest period searched, days (default 0.05)")
    p.add_argument("--period-max", type=positive, default=1000.0,
                   help="longest period searched, days (default 1000)")
    p.add_argument("--chunk-rows", type=count(1), default=100_000,
                   help="input rows per chunk (default 1e5)")
    p.add_argument("-j", "--jobs", type=jobs, default=1,
                   help="worker processes over chunks; -1 = all cores (default 1)")
    add_cleaning_arguments(p)


def run(args: argparse.Namespace) -> int:
    from features.api import extract_features_file
    from features.period import PeriodSearchConfig

    bands = band_list(args)
    config = None
    if (args.period_min, args.period_max) != (0.05, 1000.0):
        config = PeriodSearchConfig(period_min=args.period_min, period_max=args.period_max)
    s = extract_features_file(args.input, args.output, cmap=column_map(args), n_jobs=args.jobs,
                              chunk_rows=args.chunk_rows, bands=bands, config=config,
                              cleaning=cleaning_config(args))
    print(f"{s['n_objects']} objects, {s['n_series']} series, bands {','.join(s['bands'])} "
          f"-> {s['output']} in {s['seconds']:.1f} s ({s['lc_per_second']} LC/s)")
    nan = s["nan_counts"]
    worst = ", ".join(f"{k} {v}" for k, v in sorted(nan.items(), key=lambda kv: -kv[1])[:5])
    print(f"undefined (NaN) values: {s['n_values_nan']} in {len(nan)} columns"
          + (f" (most: {worst})" if nan else "")
          + f"; series below min points {s['n_series_below_min_points']}, "
          f"flat {s['n_series_flat']}, missing bands {s['n_objects_missing_band']}")
    c = s.get("cleaning")
    if c:
        print(f"cleaning: {c['rows_in'] - c['rows_out']} of {c['rows_in']} rows removed "
              f"(dropped {c['rows_dropped']}, merged {c['rows_merged']}); "
              f"quarantined objects {c['objects_quarantined'] or 'none'}")
    return 0
