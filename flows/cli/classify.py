"""``lcpipe classify``: every model of a bundle on new light curves."""

import argparse

from ._common import add_dask_arguments, prefect_quiet_option

HELP = "classify light curves with a model bundle (forest, CNN, robust-PCA distances)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from models.settings import ClassifySettings

    from ._settings import add_settings_arguments

    p.add_argument("--model", required=True, metavar="BUNDLE",
                   help="bundle folder, a run folder of `lcpipe train`, or 'crts' (shipped)")
    p.add_argument("--data", required=True, metavar="IN",
                   help="light curves: Parquet or CSV file, or a folder of them")
    p.add_argument("-o", "--output", required=True, metavar="OUT.parquet",
                   help="predictions; beside it OUT.rpca_distances.parquet, "
                        "OUT.quarantine.parquet and the chunk cache OUT.work/")
    prefect_quiet_option(p)
    add_dask_arguments(p)
    add_settings_arguments(p, ClassifySettings, "settings (models.settings.ClassifySettings)")


def run(args: argparse.Namespace) -> int:
    from models.settings import ClassifySettings

    from ._common import prepare_flow_command, run_flow

    settings = prepare_flow_command(args, ClassifySettings, args.data, model=args.model)
    from flows.classify import classify

    r = run_flow(args, classify, model=args.model, data=args.data, output=args.output,
                 settings=settings)
    print(f"\n{r['objects_classified']} objects classified ({r['objects_quarantined']} "
          f"quarantined of {r['objects_in']}) with {r['bundle']}")
    for model, counts in r["predicted_counts"].items():
        top = ", ".join(f"{c} {n}" for c, n in sorted(counts.items(), key=lambda kv: -kv[1])[:6])
        print(f"  {model}: {top}{', ...' if len(counts) > 6 else ''}")
    print(f"predictions: {r['output']}\nrobust-PCA distances: {r['rpca_distances']}\n"
          f"quarantine: {r['quarantine']}")
    return 0
