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
    p.add_argument("-o", "--output", required=True, metavar="REPORTDIR",
                   help="report folder (new, or an existing one such as a train run's "
                        "reports/): the run's tables robustness_objects, robustness_classes "
                        "(and cadence, adversarial_objects, adversarial_classes) and its runs "
                        "row are added to it (docs/reports.md)")
    p.add_argument("-k", "--draws", type=count(1), default=20,
                   help="redraws of every magnitude from N(mag, mag_err) (default 20)")
    p.add_argument("--seed", type=count(0), default=0, help="seed of the redraws (default 0)")
    p.add_argument("--cadence", type=fractions, metavar="F1,F2,...",
                   help="also classify the light curves with only these fractions of their "
                        "points kept (e.g. 0.9,0.7,0.5): the cadence table, accuracy against "
                        "the fraction kept")
    p.add_argument("--adversarial", action="store_true",
                   help="also search, per object, the smallest change of the magnitudes (in "
                        "units of their error bars) that flips the CNN's class (and the "
                        "hybrid's, when the bundle has one): the adversarial tables "
                        "(docs/explain.md)")
    p.add_argument("--labels", metavar="LABELS",
                   help="object_id,label table: accuracy in the cadence table")
    p.add_argument("--run-id", metavar="ID",
                   help="run identifier (default robustness-<UTC time>-<random>)")
    p.add_argument("-j", "--jobs", type=jobs, default=1,
                   help="processes for the features (default 1)")
    add_cleaning_arguments(p)


def run(args: argparse.Namespace) -> int:
    import datetime as _dt

    from models.bundle import load_bundle
    from models.predictions import new_run_id
    from models.reporting import write_robustness_reports, write_run_row
    from models.robustness import robustness_tables
    from pipeline.contract import read_table
    from pipeline.errors import ConfigError
    from pipeline.hashing import file_hash
    from pipeline.labels import read_labels
    from pipeline.reports import robustness_markdown
    from pipeline.validate import clean_frame

    out = output_folder(args.output)
    bundle = load_bundle(args.model)  # a bad bundle is refused before any work
    if args.labels and not args.cadence:
        raise ConfigError("--labels is used by the cadence test: give --cadence too")
    run_id = args.run_id or new_run_id("robustness")
    started = _dt.datetime.now(_dt.UTC)
    labels = read_labels(args.labels) if args.labels else None
    cleaned = clean_frame(read_table(args.input, column_map(args)), cleaning_config(args))
    lcs = cleaned.series
    networks = [m for m in ("cnn", "hybrid") if m in bundle.models] if args.adversarial else []
    with scratch_folder(out, "robustness") as scratch:
        tables, seconds = robustness_tables(args.model, lcs, scratch, k=args.draws,
                                            seed=args.seed, fractions=args.cadence,
                                            labels=labels, adversarial=networks,
                                            n_jobs=args.jobs)
    write_robustness_reports(out, run_id, tables)
    params = {"input": str(args.input), "bundle": str(args.model), "draws": args.draws,
              "seed": args.seed, "cadence": args.cadence, "labels": args.labels,
              "adversarial": networks, "jobs": args.jobs}
    counts = cleaned.counts
    write_run_row(out, run_id, flow="robustness", status="completed", started=started,
                  parameters=params, input_data_hash=file_hash(args.input),
                  stage_seconds=seconds, objects_in=counts.objects_in,
                  objects_quarantined=counts.objects_in - counts.objects_out,
                  objects_classified=counts.objects_out, bundle=str(bundle.path),
                  model_hashes={k: file_hash(bundle.model_path(k)) for k in bundle.models})
    print(robustness_markdown(out, run_id))
    print(f"-> {out} (run {run_id}: " + ", ".join(tables) + ")")
    return 0
