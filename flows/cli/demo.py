"""``lcpipe demo``: the main job (train flow) on the bundled CRTS sample."""

import argparse

from ._common import prefect_quiet_option

HELP = "run the main job on the bundled CRTS sample (no download, no server to start)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", default="lcpipe-out/demo", metavar="RUN_DIR",
                   help="run folder (default ./lcpipe-out/demo)")
    prefect_quiet_option(p)


def run(args: argparse.Namespace) -> int:
    from models.settings import TrainSettings
    from pipeline.demo import sample_paths

    from ._common import apply_quiet, run_flow
    from .train import _print_summary

    apply_quiet(args)
    from flows.train import train

    paths = sample_paths()
    print(f"lcpipe demo: the train flow on {paths['lightcurves']} (435 real CRTS light "
          "curves; the 7 classes of Mahabal et al. 2017; 5-fold CV of the training part for "
          "the stack and the 'unknown' thresholds; Prefect's ephemeral API)", flush=True)
    _print_summary(run_flow(args, train, data=paths["lightcurves"], labels=paths["labels"],
                            output=args.output,
                            settings=TrainSettings(classes="paper7", cv_folds=5)))
    return 0
