"""``lcpipe dmdt``: dm-dt images of every light curve of a table."""

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
)

HELP = "compute dm-dt images (Mahabal et al. 2017) of a light-curve table, streaming"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_input_arguments(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT.parquet")
    p.add_argument("--bins", default="mahabal2017",
                   help="'mahabal2017' (22 dm x 24 dt, default), 'scope' (26 x 26), "
                        "'lcpipe_fine' (36 x 32) or a JSON file with dm_edges [mag] and "
                        "dt_edges [days]")
    p.add_argument("--norm", default="paper", choices=["paper", "probability", "max", "counts"],
                   help="pixel normalisation (default 'paper': uint8 ceil(255 count/npairs))")
    p.add_argument("--bands", default=None,
                   help="comma-separated channel order (default: all bands, by wavelength)")
    p.add_argument("--chunk-rows", type=count(1), default=1_000_000,
                   help="rows per processing chunk (memory bound; default 1e6)")
    p.add_argument("-j", "--jobs", type=jobs, default=1,
                   help="threads for the counting kernel; -1 = all cores (default 1)")
    add_cleaning_arguments(p)


def run(args: argparse.Namespace) -> int:
    import time

    from pipeline.dmdt import dmdt_file

    bands = band_list(args)
    t0 = time.perf_counter()
    s = dmdt_file(args.input, args.output, bins=args.bins, norm=args.norm,
                  cmap=column_map(args), bands=bands, config=cleaning_config(args),
                  chunk_rows=args.chunk_rows, n_jobs=args.jobs)
    dt = time.perf_counter() - t0
    c = s["cleaning"]
    removed = c["rows_in"] - c["rows_out"]
    print(f"{s['objects']} objects, {s['pairs']} pairs -> {s['output']} "
          f"(bins {s['bins']} {s['shape'][0]}x{s['shape'][1]}, bands {','.join(s['bands'])}, "
          f"norm {s['norm']}) in {dt:.1f} s")
    print(f"cleaning: {removed} of {c['rows_in']} rows removed "
          f"(dropped {c['rows_dropped']}, merged {c['rows_merged']}); "
          f"quarantined objects {c['objects_quarantined'] or 'none'}")
    return 0
