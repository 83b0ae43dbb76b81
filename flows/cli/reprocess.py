"""``lcpipe reprocess``: one run of the incremental reprocessing of a growing survey folder."""

import argparse

from ._common import add_dask_arguments, prefect_quiet_option

HELP = "classify what is new or changed in a survey folder since the last run"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from models.settings import ClassifySettings

    from ._settings import add_settings_arguments

    p.add_argument("--survey", required=True, metavar="DIR",
                   help="survey folder of Parquet/CSV light-curve files (it may grow)")
    p.add_argument("--model", required=True, metavar="BUNDLE",
                   help="bundle folder, a run folder of `lcpipe train`, or 'crts' (shipped)")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="predictions.parquet (latest per object), manifest.parquet, work/")
    prefect_quiet_option(p)
    add_dask_arguments(p)
    add_settings_arguments(p, ClassifySettings, "settings (models.settings.ClassifySettings)")


def run(args: argparse.Namespace) -> int:
    from models.settings import ClassifySettings

    from ._common import prepare_flow_command, run_flow

    settings = prepare_flow_command(args, ClassifySettings, args.survey, model=args.model)
    from flows.reprocess import reprocess

    r = run_flow(args, reprocess, survey=args.survey, model=args.model, output=args.output,
                 settings=settings)
    how = f"full run ({r['reason']})" if r["full"] else "incremental"
    print(f"{how}: new {r['new']}, changed {r['changed']}, unchanged {r['unchanged']}, "
          f"quarantined {r['quarantined']} -> {r['predictions']}")
    return 0
