"""``lcpipe forest``: train, apply and cross-validate the random-forest baseline."""

from __future__ import annotations

import argparse

from ._common import add_debug_argument, count, jobs

HELP = "random-forest baseline on feature tables: train, predict, cv"


def _add_forest_params(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("forest")
    g.add_argument("--n-estimators", type=count(1), default=500, help="trees (default 500)")
    g.add_argument("--min-samples-leaf", type=count(1), default=1, help="default 1")
    g.add_argument("--max-features", default=0.2, type=_max_features,
                   help="features per split: sqrt, log2, an int or a fraction (default 0.2)")
    g.add_argument("--class-weight", default="balanced",
                   choices=["balanced", "balanced_subsample", "none"],
                   help="class weights (default balanced)")
    g.add_argument("--missing", default="native", choices=["native", "median", "error"],
                   help="NaN features: tree-native routing (default), median imputation, "
                        "or refuse")
    g.add_argument("--include-magnitudes", action="store_true",
                   help="also use the apparent-magnitude levels (mean, median, weighted_mean)")
    g.add_argument("-j", "--jobs", type=jobs, default=1, help="parallel jobs (default 1)")
    g.add_argument("--seed", type=count(0), default=0, help="random seed (default 0)")


def _max_features(text: str) -> str | int | float:
    """argparse ``type=``: 'sqrt', 'log2', a count >= 1 or a fraction in (0, 1]."""
    if text in ("sqrt", "log2"):
        return text
    try:
        value = float(text) if "." in text else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not sqrt, log2, a count or a fraction") from None
    if (isinstance(value, int) and value < 1) or (isinstance(value, float)
                                                   and not 0 < value <= 1):
        raise argparse.ArgumentTypeError(f"{text!r}: a count must be >= 1, a fraction in (0, 1]")
    return value


def _params(args: argparse.Namespace) -> dict:
    mf = args.max_features
    return {"n_estimators": args.n_estimators, "min_samples_leaf": args.min_samples_leaf,
            "max_features": mf,
            "class_weight": None if args.class_weight == "none" else args.class_weight,
            "missing": args.missing, "n_jobs": args.jobs, "random_state": args.seed}


def _exclude(args: argparse.Namespace) -> tuple[str, ...]:
    from models.forest_files import DEFAULT_EXCLUDE

    return () if args.include_magnitudes else DEFAULT_EXCLUDE


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    t = sub.add_parser("train", help="train on a labelled feature table, save a skops model")
    t.add_argument("features", metavar="FEATURES.parquet")
    t.add_argument("--labels", required=True, metavar="LABELS.csv")
    t.add_argument("-o", "--output", required=True, metavar="MODEL.skops")
    t.add_argument("--classes", default="all",
                   help="'all' (default), 'paper7' (Mahabal et al. 2017) or a comma list")
    _add_forest_params(t)
    q = sub.add_parser("predict", help="predict classes of a feature table")
    q.add_argument("model", metavar="MODEL.skops")
    q.add_argument("features", metavar="FEATURES.parquet")
    q.add_argument("-o", "--output", required=True, metavar="PRED.parquet")
    c = sub.add_parser("cv", help="stratified k-fold cross-validation report")
    c.add_argument("features", metavar="FEATURES.parquet")
    c.add_argument("--labels", required=True, metavar="LABELS.csv")
    c.add_argument("--classes", default="paper7",
                   help="'paper7' (default), 'all' or a comma list")
    c.add_argument("-o", "--output", default=None, metavar="REPORT.json",
                   help="JSON report (out-of-fold predictions go to REPORT.oof.parquet)")
    c.add_argument("--folds", type=count(2), default=5, help="number of folds (default 5)")
    c.add_argument("--importances", action="store_true",
                   help="permutation importances on the held-out folds (slow)")
    _add_forest_params(c)
    for sp in (t, q, c):
        add_debug_argument(sp)


def run(args: argparse.Namespace) -> int:
    from models import forest_files as ff

    if args.action == "train":
        s = ff.train_forest_file(args.features, args.labels, args.output, classes=args.classes,
                                 params=_params(args), exclude=_exclude(args))
        print(f"trained on {s['n_used']} objects, {len(s['classes'])} classes, "
              f"{s['n_features']} features -> {s['output']}")
        print(f"skipped: {s['n_unlabelled']} unlabelled, {s['n_other_classes']} of other "
              f"classes; {s['n_labels_without_object']} labels without features")
        return 0
    if args.action == "predict":
        s = ff.predict_forest_file(args.model, args.features, args.output)
        print(f"{s['n_objects']} objects -> {s['output']}; predicted {s['predicted_counts']}")
        return 0
    from models.evaluation import format_report

    r = ff.cv_forest_file(args.features, args.labels, args.output, classes=args.classes,
                          params=_params(args), importances=args.importances,
                          n_splits=args.folds, seed=args.seed, exclude=_exclude(args))
    print(format_report(r, title=f"Random forest, {args.folds}-fold CV, classes "
                                 f"{args.classes} ({r['n_features']} features, "
                                 f"{r['seconds']:.0f} s)"))
    if args.importances:
        print("Top permutation importances (balanced-accuracy drop on held-out folds):")
        for e in r["permutation_importances"][:15]:
            print(f"  {e['feature']:45s} {e['mean']:.4f} +- {e['std']:.4f}")
    return 0
