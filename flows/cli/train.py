"""``lcpipe train``: the train flow (forest, CNN and robust PCA compared; reports and a bundle)."""

import argparse

from ._common import add_dask_arguments, prefect_quiet_option

HELP = "train and compare the forest, the CNN and robust PCA; write reports and a model bundle"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from models.settings import TrainSettings

    from ._settings import add_settings_arguments

    p.add_argument("--data", required=True, metavar="IN",
                   help="light curves: Parquet or CSV file, or a folder of them")
    p.add_argument("--labels", required=True, metavar="LABELS", help="object_id,label table")
    p.add_argument("-o", "--output", required=True, metavar="RUN_DIR",
                   help="run folder: reports/ (every run appended), bundles/<run_id>/, work/")
    prefect_quiet_option(p)
    add_dask_arguments(p)
    add_settings_arguments(p, TrainSettings, "settings (models.settings.TrainSettings)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from flows._common import check_paths
    from models.settings import TrainSettings
    from pipeline.labels import read_labels

    from ._common import prepare_flow_command, run_flow

    read_labels(args.labels)  # bad labels or output: one line, before Prefect starts
    check_paths(Path(args.output), [Path(args.data), Path(args.labels)])
    settings = prepare_flow_command(args, TrainSettings, args.data)
    from flows.train import train

    r = run_flow(args, train, data=args.data, labels=args.labels, output=args.output,
                 settings=settings)
    _print_summary(r)
    return 0


def _print_summary(r: dict) -> None:
    ing = r["ingest"]
    print(f"\nrun {r['run_id']}: {ing['objects_in']} objects in, {ing['objects_out']} after "
          f"cleaning, {r['counts']['n_used']} labelled in {len(r['counts']['class_counts'])} "
          f"classes; {r['failed_chunk_objects']} lost to failed chunks, "
          f"{len(r['failed_files'])} unreadable files\n")
    print(r["comparison"])
    secs = ", ".join(f"{k} {v:.0f} s" for k, v in r["stage_seconds"].items())
    print(f"\nstages: {secs}")
    print(f"reports: {r['report_dir']}  (lcpipe report {r['report_dir']})")
    print(f"bundle:  {r['bundle']}  (lcpipe classify --model {r['bundle']} --data IN -o OUT)")
