"""``lcpipe rpca``: robust PCA of a dm-dt image stack (survey, class and individual parts)."""

from __future__ import annotations

import argparse

from ._common import count, positive

HELP = "robust PCA of dm-dt images: survey background b, class backgrounds c_i, sparse part s"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="DMDT.parquet", help="dm-dt images written by `lcpipe dmdt`")
    p.add_argument("--labels", required=True, metavar="LABELS",
                   help="labels table (CSV or Parquet: object_id,label)")
    p.add_argument("-o", "--outdir", required=True, metavar="OUTDIR",
                   help="output directory (rpca_objects.parquet, rpca_templates.parquet, PNGs, "
                        "rpca_summary.json)")
    p.add_argument("--rank-background", type=count(1), default=1,
                   help="rank of the survey background b (default 1)")
    p.add_argument("--rank-class", type=count(1), default=5,
                   help="rank of each class part c_i (default 5)")
    p.add_argument("--pixel-transform", choices=["sqrt", "none"], default="sqrt",
                   help="pixel transform before the decomposition (default sqrt)")
    p.add_argument("--method", choices=["altproj", "pcp"], default="altproj",
                   help="robust PCA solver (default altproj)")
    p.add_argument("--tol", type=positive, default=1e-3,
                   help="tolerance of each fit (default 1e-3)")
    p.add_argument("--max-iter", type=count(1), default=200,
                   help="iteration cap of each fit (default 200)")
    p.add_argument("--min-class-size", type=count(1), default=1,
                   help="leave classes with fewer labelled images out of the fit (default 1)")


def run(args: argparse.Namespace) -> int:
    import time
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from pipeline.rpca_dmdt import rpca_dmdt_file

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        # reported once, per fit, in the summary below
        warnings.simplefilter("ignore", ConvergenceWarning)
        s = rpca_dmdt_file(args.input, args.labels, args.outdir,
                           rank_background=args.rank_background, rank_class=args.rank_class,
                           pixel_transform=args.pixel_transform, method=args.method,
                           tol=args.tol, max_iter=args.max_iter,
                           min_class_size=args.min_class_size)
    dt = time.perf_counter() - t0
    print(f"{s['objects']} objects ({s['fitted']} fitted, {s['unlabelled']} unlabelled, "
          f"{sum(s['left_out_small_classes'].values())} in classes left out), "
          f"{len(s['classes'])} classes -> {args.outdir} in {dt:.1f} s")
    print(f"in-sample nearest-subspace accuracy {s['in_sample_nearest_subspace_accuracy']:.3f}")
    if s["not_converged"]:
        print(f"warning: not converged within --max-iter {args.max_iter}: "
              f"{', '.join(s['not_converged'])}")
    return 0
