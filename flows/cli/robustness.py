"""``lcpipe robustness``: how often the measurement errors change each prediction."""

from __future__ import annotations

import argparse

from ._common import (
    add_cleaning_arguments,
    add_input_arguments,
    cleaning_config,
    column_map,
    count,
    fractions,
    jobs,
    output_folder,
    scratch_folder,
)

HELP = ("redraw the magnitudes from their error bars K times (and thin the cadence) and "
        "report how stable each model's predictions are")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_input_arguments(p)
    p.add_argument("--model", required=True, metavar="BUNDLE",
                   help="bundle folder, run folder of `lcpipe train`, or 'crts'")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="folder for robustness_objects.parquet, robustness_classes.parquet "
                        "(and robustness_cadence.parquet)")
    p.add_argument("-k", "--draws", type=count(1), default=20,
                   help="redraws of every magnitude from N(mag, mag_err) (default 20)")
    p.add_argument("--seed", type=count(0), default=0, help="seed of the redraws (default 0)")
    p.add_argument("--cadence", type=fractions, metavar="F1,F2,...",
                   help="also classify the light curves with only these fractions of their "
                        "points kept (e.g. 0.9,0.7,0.5): accuracy against the fraction kept "
                        "in robustness_cadence.parquet")
    p.add_argument("--adversarial", action="store_true",
                   help="also search, per object, the smallest change of the magnitudes (in "
                        "units of their error bars) that flips the CNN's class: "
                        "robustness_adversarial.parquet (per object) and "
                        "robustness_adversarial_classes.parquet (docs/explain.md)")
    p.add_argument("--labels", metavar="LABELS",
                   help="object_id,label table: accuracy in the cadence table")
    p.add_argument("-j", "--jobs", type=jobs, default=1,
                   help="processes for the features (default 1)")
    add_cleaning_arguments(p)


def run(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from models.bundle import load_bundle
    from models.robustness import cadence_robustness, error_robustness
    from pipeline.errors import ConfigError
    from pipeline.io import write_parquet_atomic
    from pipeline.labels import read_labels
    from pipeline.lightcurves import read_lightcurves

    out = output_folder(args.output)
    bundle = load_bundle(args.model)  # a bad bundle is refused before any work
    if args.labels and not args.cadence:
        raise ConfigError("--labels is used by the cadence test: give --cadence too")
    labels = read_labels(args.labels) if args.labels else None
    lcs = read_lightcurves(args.input, column_map(args), config=cleaning_config(args))
    with scratch_folder(out, "robustness") as scratch:
        objects, classes, info = error_robustness(args.model, lcs, scratch / "errors",
                                                  k=args.draws, seed=args.seed,
                                                  n_jobs=args.jobs)
        if args.cadence:  # the answers on the light curves as measured are known already
            cadence, cinfo = cadence_robustness(
                args.model, lcs, scratch / "cadence", args.cadence, labels=labels,
                seed=args.seed, min_points=bundle.settings.min_points, n_jobs=args.jobs,
                measured=objects)
        if args.adversarial:
            from models.adversarial import adversarial_check, flip_summary

            flips = adversarial_check(args.model, lcs, seed=args.seed)
    meta = {"lcpipe.robustness": {"bundle": str(args.model), "input": str(args.input),
                                  "draws": args.draws, "seed": args.seed,
                                  "cadence": args.cadence, "labels": args.labels,
                                  "adversarial": args.adversarial}}
    write_parquet_atomic(pa.Table.from_pandas(objects, preserve_index=False),
                         out / "robustness_objects.parquet", metadata=meta)
    write_parquet_atomic(pa.Table.from_pandas(classes, preserve_index=False),
                         out / "robustness_classes.parquet", metadata=meta)
    print(f"{info['objects']} objects, {args.draws} redraws in {info['seconds']} s")
    for model, g in objects.groupby("model", sort=True):
        print(f"  {model}: predicted class kept in {g['stable_fraction'].mean():.3f} of the "
              f"draws on average; {(g['stable_fraction'] == 1).mean():.3f} of the objects "
              "never change")
    written = "robustness_objects.parquet, robustness_classes.parquet"
    if args.cadence:
        write_parquet_atomic(pa.Table.from_pandas(cadence, preserve_index=False),
                             out / "robustness_cadence.parquet", metadata=meta)
        written += ", robustness_cadence.parquet"
        what = "accuracy" if labels is not None else "agreement with the full light curves"
        print(f"cadence ({cinfo['seconds']} s): {what} at "
              + ", ".join(f"{f:g}" for f in [1.0] + list(args.cadence)) + " of the points kept")
        for model, g in cadence.groupby("model", sort=True):
            col = "accuracy" if labels is not None else "agreement"
            print(f"  {model}: " + " ".join(f"{v:.3f}" for v in g[col]))
    if args.adversarial:
        summary = flip_summary(flips)
        write_parquet_atomic(pa.Table.from_pandas(flips, preserve_index=False),
                             out / "robustness_adversarial.parquet", metadata=meta)
        write_parquet_atomic(pa.Table.from_pandas(summary, preserve_index=False),
                             out / "robustness_adversarial_classes.parquet", metadata=meta)
        written += ", robustness_adversarial.parquet, robustness_adversarial_classes.parquet"
        row = summary.iloc[-1]
        print(f"adversarial (CNN): median flip size {row['median_flip_sigma']:.2f} sigma; "
              f"{row['within_1_sigma']:.3f} of the objects flip within 1 sigma, "
              f"{row['never_flipped']:.3f} never (up to the largest step)")
    print(f"-> {out}/{written}")
    return 0
