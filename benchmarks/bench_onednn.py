"""Benchmark: CNN training and inference with TensorFlow's oneDNN kernels on (lcpipe) and off.

    python benchmarks/bench_onednn.py [--rounds 3]

``models.cnn`` sets ``TF_ENABLE_ONEDNN_OPTS=1`` unless the environment sets
it; TensorFlow itself enables oneDNN by default on some x86 CPUs only. The
variable is read once, when TensorFlow is imported, so each measurement runs
in a fresh process, alternating on / off (``--rounds`` pairs; this VM's speed
drifts, so only paired ratios mean much). Each process times, for
``vgg6`` on the ``fine`` input (36 x 32 x 2) and ``mahabal2017`` on the
``paper`` input (22 x 24 x 1): one warmed-up epoch of plain Keras ``fit`` on
4,000 seeded random images (batch 64, best of 2) and ``predict`` of 20,000
(batch 512, best of 2). The anchor is oneDNN off (TensorFlow's default on the
benchmark machine); prints each pair and the median ratio on / off.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CASES = (("vgg6", (36, 32, 2)), ("mahabal2017", (22, 24, 1)))


def _child() -> None:
    """Run in a fresh process: print one JSON line of images/s per case."""
    sys.path.insert(0, str(ROOT))
    from bench_cnn import _best_of  # this script's folder is on sys.path

    from models.cnn import _keras, build_network

    _keras()
    from tensorflow.python.util import _pywrap_util_port

    rng = np.random.default_rng(0)
    res: dict[str, object] = {"onednn": bool(_pywrap_util_port.IsMklEnabled())}
    for arch, shape in CASES:
        X = rng.random((4000, *shape)).astype(np.float32)
        y = np.arange(len(X)) % 7
        net = build_network(arch, shape, 7)
        net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        net.fit(X, y, batch_size=64, epochs=1, verbose=0)
        t_fit = _best_of(lambda n=net, a=X, b=y: n.fit(a, b, batch_size=64, epochs=1, verbose=0), 2)
        Xi = rng.random((20000, *shape)).astype(np.float32)
        net.predict(Xi[:2000], batch_size=512, verbose=0)
        t_inf = _best_of(lambda n=net, a=Xi: n.predict(a, batch_size=512, verbose=0), 2)
        res[f"train {arch}"] = len(X) / t_fit
        res[f"infer {arch}"] = len(Xi) / t_inf
    print(json.dumps(res), flush=True)


def _run(onednn: str) -> dict:
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, __file__, "--child"], env=env, check=True,
                         capture_output=True, text=True).stdout
    res = json.loads(out.strip().splitlines()[-1])
    if res["onednn"] != (onednn == "1"):
        raise RuntimeError(f"TF_ENABLE_ONEDNN_OPTS={onednn} was not honoured: {res}")
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3, help="on/off pairs (default 3)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child()
        return 0
    keys = [f"{what} {arch}" for arch, _ in CASES for what in ("train", "infer")]
    pairs = []
    for r in range(args.rounds):
        on, off = _run("1"), _run("0")
        pairs.append((on, off))
        print(f"round {r + 1}: " + "; ".join(f"{k} {on[k]:.0f} vs {off[k]:.0f} img/s"
                                             for k in keys), flush=True)
    print(f"\nCPU cores {os.cpu_count()}; images/s, median of {args.rounds} paired rounds")
    print(f"| {'case':22s} | {'oneDNN off':>10s} | {'on (lcpipe)':>11s} | {'ratio':>6s} |")
    print(f"|{'-' * 24}|{'-' * 12}|{'-' * 13}|{'-' * 8}|")
    for k in keys:
        off = np.median([p[1][k] for p in pairs])
        on = np.median([p[0][k] for p in pairs])
        ratio = np.median([p[0][k] / p[1][k] for p in pairs])
        print(f"| {k:22s} | {off:10.0f} | {on:11.0f} | {ratio:6.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
