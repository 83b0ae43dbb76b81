"""``lcpipe cnn``: train, apply, cross-validate and explain CNN classifiers of dm-dt images.

Subcommands::

    lcpipe cnn train DMDT.parquet --labels L.csv -o MODELDIR [--arch vgg6] [--tensorboard DIR]
    lcpipe cnn predict DMDT.parquet --model MODELDIR -o PRED.parquet
    lcpipe cnn cv LIGHTCURVES.parquet --labels L.csv -o OUTDIR --classes paper7|all
    lcpipe cnn saliency DMDT.parquet --model MODELDIR -o OUTDIR [--labels L.csv]

Keras/TensorFlow is imported only inside ``run``.
"""

from __future__ import annotations

import argparse

from ._common import add_debug_argument, count, positive, unit_fraction

HELP = "CNN classifier of dm-dt images: train, predict, cv, saliency"

_ARCHS = ("mahabal2017", "vgg6", "dmdtnet")
_REPS = ("paper", "fine")


def _add_training(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=count(1), default=30, help="maximum epochs (default 30)")
    g.add_argument("--batch-size", type=count(1), default=64, help="default 64")
    g.add_argument("--learning-rate", type=positive, default=None,
                   help="initial Adam rate (default: 1e-3 for mahabal2017, 3e-3 for vgg6 "
                        "and dmdtnet)")
    g.add_argument("--patience", type=count(0), default=4,
                   help="early-stopping patience in epochs (default 4)")
    g.add_argument("--class-weight", default="none", choices=["balanced", "none"],
                   help="none (default): every object counts the same; balanced: loss "
                        "weights n / (n_classes n_c), capped at --max-class-weight")
    g.add_argument("--max-class-weight", type=positive, default=10.0,
                   help="cap of the balanced class weights (default 10)")
    g.add_argument("--label-smoothing", type=unit_fraction, default=0.0,
                   help="label smoothing of the loss, in [0, 1) (default 0: plain labels)")
    g.add_argument("--seed", type=count(0), default=0, help="random seed (default 0)")


def _csv(kind: type, choices: tuple[str, ...] | None = None):
    def parse(text: str) -> list:
        vals = [kind(v.strip()) for v in text.split(",") if v.strip()]
        if choices is not None:
            bad = [v for v in vals if v not in choices]
            if bad:
                raise argparse.ArgumentTypeError(
                    f"invalid choice {bad[0]!r} (choose from {', '.join(choices)})")
        return vals
    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="cnn_command", metavar="ACTION", required=True)

    t = sub.add_parser("train", help="train a model on a dm-dt file")
    t.add_argument("input", metavar="DMDT.parquet",
                   help="dm-dt images from `lcpipe dmdt` (--norm counts, or paper for the "
                        "paper representation)")
    t.add_argument("--labels", required=True, metavar="LABELS", help="object_id,label table")
    t.add_argument("-o", "--output", required=True, metavar="MODELDIR")
    t.add_argument("--arch", default="vgg6", choices=_ARCHS, help="network (default vgg6)")
    t.add_argument("--representation", default=None, choices=_REPS,
                   help="input representation (default: from the file's bins and norm)")
    t.add_argument("--classes", default="all",
                   help="'all' (default), 'paper7' or a comma-separated list")
    t.add_argument("--augment", type=count(0), default=0,
                   help="sparser-cadence copies per object (needs --lightcurves; default 0)")
    t.add_argument("--lightcurves", default=None, metavar="LC.parquet",
                   help="light curves of the same objects, for --augment")
    t.add_argument("--tensorboard", default=None, metavar="DIR",
                   help="write TensorBoard logs to DIR (loss and accuracy per epoch, weight "
                        "histograms; needs pip install lcpipe[tensorboard]; default off)")
    _add_training(t)

    q = sub.add_parser("predict", help="classify a dm-dt file with a saved model")
    q.add_argument("input", metavar="DMDT.parquet")
    q.add_argument("--model", required=True, metavar="MODELDIR")
    q.add_argument("-o", "--output", required=True, metavar="PRED.parquet")

    c = sub.add_parser("cv", help="stratified k-fold CV on light curves (all runs, one report)")
    c.add_argument("input", metavar="LIGHTCURVES.parquet", help="light-curve table")
    c.add_argument("--labels", required=True, metavar="LABELS")
    c.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    c.add_argument("--classes", default="paper7",
                   help="'paper7' (default: Mahabal et al. 2017), 'all', or a list")
    c.add_argument("--arch", type=_csv(str, _ARCHS), default=["mahabal2017", "vgg6"],
                   help="comma-separated architectures (default mahabal2017,vgg6)")
    c.add_argument("--representation", type=_csv(str, _REPS), default=["paper", "fine"],
                   help="comma-separated representations (default paper,fine)")
    c.add_argument("--augment", type=_csv(int), default=[0],
                   help="comma-separated copies per object, e.g. 0,2 (default 0)")
    c.add_argument("--folds", type=count(2), default=5, help="number of folds (default 5)")
    c.add_argument("--fold-seed", type=count(0), default=0, help="seed of the folds (default 0)")
    _add_training(c)

    s = sub.add_parser("saliency", help="saliency maps of a model on a dm-dt file")
    s.add_argument("input", metavar="DMDT.parquet")
    s.add_argument("--model", required=True, metavar="MODELDIR")
    s.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    s.add_argument("--labels", default=None, metavar="LABELS",
                   help="explain the true class where known (default: the predicted class)")
    s.add_argument("--objects", default=None,
                   help="comma-separated object ids whose own maps are written too")
    s.add_argument("--method", choices=["saliency", "gradcam"], default="saliency",
                   help="saliency: |d score / d image| (default); gradcam: class activation "
                        "maps of the last convolution (HiResCAM)")
    _with_debug(sub)


def _config(args: argparse.Namespace):
    from models.cnn import class_weight_from_name
    from models.cnn_workflows import CNNTrainConfig

    return CNNTrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                          learning_rate=args.learning_rate, patience=args.patience,
                          max_class_weight=args.max_class_weight,
                          class_weight=class_weight_from_name(args.class_weight),
                          label_smoothing=args.label_smoothing, seed=args.seed)


def _with_debug(sub: argparse._SubParsersAction) -> None:
    for sp in sub.choices.values():
        add_debug_argument(sp)


def run(args: argparse.Namespace) -> int:
    import sys

    from models import cnn_workflows as wf

    cmd = args.cnn_command
    if cmd == "train":
        s = wf.train_cnn(args.input, args.labels, args.output, arch=args.arch,
                         representation=args.representation, classes=args.classes,
                         config=_config(args), augment=args.augment,
                         lightcurves_path=args.lightcurves,
                         tensorboard_dir=args.tensorboard)
        print(f"{s['arch']} on {s['representation']}: {s['objects']} objects "
              f"({len(s['classes'])} classes, +{s['augmented_images']} augmented), "
              f"{s['epochs']} epochs (best {s['best_epoch']}) in {s['train_seconds']} s "
              f"-> {s['model']}")
        if s["tensorboard"] is not None:
            print(f"TensorBoard logs -> {s['tensorboard']} (tensorboard --logdir "
                  f"{s['tensorboard']})")
    elif cmd == "predict":
        s = wf.predict_cnn(args.input, args.model, args.output)
        print(f"{s['objects']} objects classified ({s['images_per_second']:.0f} images/s) "
              f"-> {s['output']}")
    elif cmd == "cv":
        runs = [wf.CVRun(r, a, k) for r in args.representation for a in args.arch
                for k in args.augment]
        s = wf.cross_validate_cnn(args.input, args.labels, args.output, runs,
                                  classes=args.classes, config=_config(args),
                                  n_splits=args.folds, fold_seed=args.fold_seed,
                                  log=lambda line: print(line, file=sys.stderr, flush=True))
        print(wf.cv_summary_table(s))
        print(f"-> {args.output}/cv_results.md, cv_results.json, oof_predictions.parquet")
    elif cmd == "saliency":
        objects = [o.strip() for o in args.objects.split(",")] if args.objects else None
        s = wf.saliency_report(args.input, args.model, args.output, labels_path=args.labels,
                               object_ids=objects, method=args.method)
        print(f"{args.method} of {s['objects']} objects ({s['basis']} class) -> {args.output}")
    return 0
