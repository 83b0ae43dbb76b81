"""Benchmark: CNN training and inference speed on CPU, and full-CRTS training time.

    python benchmarks/bench_cnn.py [--n-infer 20000] [--n-train 4000] [--no-crts]
        [--infer-batch-sizes 256,512,1024,4096]

For every architecture x representation, on seeded random images of the
representation's shape:

* inference: ``DmDtCNN.predict_proba`` (batches of 512) against the anchor,
  plain Keras ``model.predict`` with its default batch size (32), on the
  same network; the probabilities must agree;
* training: ``DmDtCNN.fit`` (class weights, validation split, callbacks),
  two epochs after a warm-up, against the anchor, plain ``model.fit`` of the
  same network and batch size without callbacks.

Then, unless ``--no-crts`` or the data are absent, the time to train to
convergence (early stopping) on the whole CRTS training set (16 classes),
from dm-dt input in memory, for the faithful ``paper/mahabal2017``,
``fine/mahabal2017`` and the best ``fine/vgg6`` (``--crts-cases best``: the
best only), each with its architecture's default learning rate.
Prints one table: case, anchor, lcpipe, ratio, CPU cores and threads.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CRTS = ROOT.parent / "shared" / "data" / "crts"


def _images(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.random((n, *shape)).astype(np.float32)


def _best_of(fn, repeat: int = 3) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_case(arch: str, rep_name: str, n_infer: int, n_train: int,
               rng: np.random.Generator,
               batch_sizes: tuple[int, ...] = ()) -> list[tuple[str, float, float, str]]:
    from models.cnn import DmDtCNN, _keras
    from models.representations import get_representation

    keras = _keras()
    rep = get_representation(rep_name)
    shape = (*rep.bins.shape, len(rep.channels))
    n_classes = 7
    X = _images(rng, n_train, shape)
    y = np.arange(n_train) % n_classes

    # ---- training: lcpipe estimator (2 epochs after a 1-epoch warm-up)
    est = DmDtCNN(arch=arch, epochs=1, random_state=0).fit(X, y)
    est.set_params(epochs=2, patience=10)
    t0 = time.perf_counter()
    est.fit(X, y)
    t_lcpipe = time.perf_counter() - t0
    n_seen = 2 * est.n_train_
    # anchor: the same network, plain keras fit, no callbacks/validation
    model = est.model_
    clone = keras.models.clone_model(model)
    clone.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    clone.fit(X[:est.n_train_], y[:est.n_train_], batch_size=est.batch_size, epochs=1,
              verbose=0)
    t0 = time.perf_counter()
    clone.fit(X[:est.n_train_], y[:est.n_train_], batch_size=est.batch_size, epochs=2,
              verbose=0)
    t_anchor = time.perf_counter() - t0
    rows = [(f"train {arch}/{rep_name} img/s", n_seen / t_anchor, n_seen / t_lcpipe,
             "keras fit")]

    # ---- inference
    Xi = _images(rng, n_infer, shape)
    p_lcpipe = est.predict_proba(Xi[:1000])
    p_anchor = model.predict(Xi[:1000], verbose=0)
    np.testing.assert_allclose(p_lcpipe, p_anchor, rtol=1e-4, atol=1e-6)
    t_l = _best_of(lambda: est.predict_proba(Xi))
    t_a = _best_of(lambda: model.predict(Xi, verbose=0), repeat=1)
    rows.append((f"infer {arch}/{rep_name} img/s", n_infer / t_a, n_infer / t_l,
                 "keras predict bs=32"))
    for bs in batch_sizes:  # predict_proba at other inference batch sizes (no anchor)
        est.set_params(inference_batch_size=bs)
        rows.append((f"infer {arch}/{rep_name} bs={bs} img/s", float("nan"),
                     n_infer / _best_of(lambda: est.predict_proba(Xi)), "-"))
    return rows


#: (representation, architecture) trained on all of CRTS: faithful, fine input, best
CRTS_CASES = (("paper", "mahabal2017"), ("fine", "mahabal2017"), ("fine", "vgg6"))


def bench_crts(save: str | None, cases: str = "all") -> list[tuple[str, float, float, str]]:
    """Seconds to train each case to convergence on all 5757 CRTS objects (16 classes)."""
    if not (CRTS / "lightcurves.parquet").exists():
        return []
    from models.cnn import DmDtCNN
    from models.representations import lightcurves_to_inputs
    from pipeline.labels import read_labels
    from pipeline.lightcurves import read_lightcurves

    lcs = read_lightcurves(CRTS / "lightcurves.parquet")
    labels = read_labels(CRTS / "labels.csv")
    rows = []
    inputs: dict[str, tuple] = {}
    for rep, arch in CRTS_CASES:
        if cases == "best" and (rep, arch) != CRTS_CASES[-1]:
            continue
        if rep not in inputs:
            t0 = time.perf_counter()
            inputs[rep] = (*lightcurves_to_inputs(lcs, rep), time.perf_counter() - t0)
        oid, X, meta, t_images = inputs[rep]
        y = labels.reindex(oid.astype(str)).to_numpy()
        keep = ~labels.reindex(oid.astype(str)).isna().to_numpy()
        t0 = time.perf_counter()
        est = DmDtCNN(arch=arch, epochs=30, random_state=0).fit(X[keep], y[keep],
                                                                  input_meta=meta)
        t_fit = time.perf_counter() - t0
        if save and (rep, arch) == CRTS_CASES[-1]:
            est.save(save)
        print(f"CRTS {rep}/{arch}: {int(keep.sum())} objects, {len(est.classes_)} classes; "
              f"dm-dt images {t_images:.1f} s; fit {t_fit:.1f} s, {len(est.history_)} epochs "
              f"(best {est.best_epoch_}, learning rate {est.learning_rate_:g})", flush=True)
        rows.append((f"CRTS training {rep}/{arch} (s)", float("nan"), t_fit,
                     f"{len(est.history_)} epochs"))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-infer", type=int, default=20000)
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--no-crts", action="store_true")
    ap.add_argument("--crts-cases", choices=["all", "best"], default="all",
                    help="full-CRTS training: faithful, fine/mahabal2017 and best, or best only")
    ap.add_argument("--save-crts-model", default=None, metavar="DIR",
                    help="also save the model trained on CRTS")
    ap.add_argument("--archs", default="mahabal2017,vgg6,dmdtnet")
    ap.add_argument("--representations", default="paper,fine")
    ap.add_argument("--infer-batch-sizes", default="", metavar="B1,B2,...",
                    help="also time predict_proba at these inference batch sizes")
    args = ap.parse_args()

    from models.cnn import _keras, keras_backend

    _keras()
    rng = np.random.default_rng(0)
    rows = []
    for rep in args.representations.split(","):
        for arch in args.archs.split(","):
            rows += bench_case(arch, rep, args.n_infer, args.n_train, rng,
                               tuple(int(b) for b in args.infer_batch_sizes.split(",") if b))
    if not args.no_crts:
        rows += bench_crts(args.save_crts_model, args.crts_cases)
    threads = os.environ.get("TF_NUM_INTRAOP_THREADS")
    print(f"\nKeras backend {keras_backend()}, CPU cores {os.cpu_count()}, "
          f"intra-op threads {threads}, "
          f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS')}")
    print(f"| {'case':32s} | {'anchor':>10s} | {'lcpipe':>10s} | {'ratio':>6s} | anchor is |")
    print(f"|{'-' * 34}|{'-' * 12}|{'-' * 12}|{'-' * 8}|{'-' * 22}|")
    for name, a, b, what in rows:
        ratio = b / a if np.isfinite(a) else float("nan")
        a_s = f"{a:10.0f}" if np.isfinite(a) else f"{'-':>10s}"
        print(f"| {name:32s} | {a_s} | {b:10.1f} | {ratio:6.2f} | {what:20s} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
