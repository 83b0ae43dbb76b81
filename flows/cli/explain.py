"""``lcpipe explain``: why a bundle's models answer what they do, for chosen objects."""

from __future__ import annotations

import argparse

from ._common import (
    add_cleaning_arguments,
    cleaning_config,
    column_map,
    jobs,
    output_folder,
    scratch_folder,
)

HELP = ("explain a bundle's answers for chosen objects: CNN class activation and saliency "
        "maps, the forest's feature contributions")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="BUNDLE",
                   help="bundle folder, run folder of `lcpipe train`, or 'crts'")
    p.add_argument("--data", required=True, metavar="IN",
                   help="light curves holding the objects: Parquet or CSV file, or a folder")
    p.add_argument("--objects", required=True, metavar="ID,...",
                   help="comma-separated object ids to explain")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="folder for explain_predictions.parquet, explain_maps.parquet, "
                        "explain_features.parquet and the PNGs")
    p.add_argument("--preset", choices=["lcpipe", "crts", "ztf"], default=None,
                   help="column names of a survey export (default: lcpipe contract names)")
    p.add_argument("--columns", default=None, metavar="MAP",
                   help="column mapping overrides, e.g. 't=MJD,mag_err=magerr'")
    p.add_argument("-j", "--jobs", type=jobs, default=1,
                   help="processes for the features (default 1)")
    add_cleaning_arguments(p)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from models.bundle import load_bundle
    from models.interpret import explain_objects
    from pipeline.errors import ConfigError
    from pipeline.lightcurves import read_lightcurves

    out = output_folder(args.output)
    ids = [o.strip() for o in args.objects.split(",") if o.strip()]
    if not ids:
        raise ConfigError("--objects: give one or more object ids, comma-separated")
    load_bundle(args.model)  # a bad bundle is refused before any work
    lcs = read_lightcurves(args.data, column_map(args), config=cleaning_config(args))
    with scratch_folder(out, "explain") as scratch:
        res = explain_objects(args.model, lcs, ids, out, scratch, n_jobs=args.jobs)
    frame = res["frame"]
    for oid, g in frame.groupby("object_id", sort=False):
        answers = ", ".join(f"{m} {c}" + ("" if p != p else f" ({p:.2f})")
                            for m, c, p in zip(g["model"], g["predicted_class"],
                                               g["probability"], strict=True))
        print(f"{oid}: {answers}")
    print(f"-> {out}/" + ", ".join(Path(v).name for k, v in res.items()
                                   if k != "frame"))
    return 0
