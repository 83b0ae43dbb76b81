"""Every number of the README's CRTS results tables, regenerated in one command.

    nice -n 10 python benchmarks/eval_all_crts.py [--list] [--only NAME[,NAME...]]

Runs, in dependency order, the evaluation scripts the README's results table names (each writes
its Markdown under ``lcpipe-out/`` and prints it): the forest first (its features are cached),
the CNNs, the robust PCA, the stack (reads the forest's and the CNN's out-of-fold
probabilities), the CNN with and without class weights over three network seeds (7 and 16
classes), the hybrid (without class weights, the default, and with them), calibration (reads
the hybrid's), "unknown", the robust-PCA out-of-distribution check (reads a train run on
CRTS, e.g. of ``build_crts_bundle.py``; give ``--only bundle`` first on a fresh clone), the
robustness of the shipped bundle and the CNN's adversarial flip sizes.
``bundle`` (the train flow on CRTS, which also rebuilds the shipped bundle) runs only when
named in ``--only``. Stops at the first failing step. About 3 hours on 2 cores; needs the
shared CRTS set (``../shared/data/crts``). ``--list`` prints the commands without running them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: (name, script and arguments), in the order they must run.
STEPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("forest", ("benchmarks/eval_forest_crts.py", "--jobs", "2")),
    ("cnn", ("benchmarks/eval_cnn_crts.py",)),
    ("rpca", ("benchmarks/eval_rpca_crts.py",)),
    ("stack", ("benchmarks/eval_stack_crts.py",)),
    ("cnn_levers", ("benchmarks/eval_cnn_levers_crts.py", "--seeds", "0,1,2")),
    ("cnn_levers_all", ("benchmarks/eval_cnn_levers_crts.py", "--classes", "all",
                        "--seeds", "0,1,2")),
    ("hybrid", ("benchmarks/eval_hybrid_crts.py",)),
    ("hybrid_weighted", ("benchmarks/eval_hybrid_crts.py", "--class-weight", "balanced")),
    ("calibration", ("benchmarks/eval_calibration_crts.py",)),
    ("ceiling", ("benchmarks/eval_ceiling_crts.py",)),
    ("unknown", ("benchmarks/eval_unknown_crts.py", "--jobs", "2")),
    ("bundle", ("benchmarks/build_crts_bundle.py",)),
    ("ood", ("benchmarks/eval_ood_rpca_crts.py",)),
    ("robustness", ("benchmarks/bench_robustness.py", "--jobs", "2")),
    ("adversarial", ("benchmarks/eval_adversarial_crts.py", "--configs", "base")),
)
#: Steps run only when named (they change files that ship with lcpipe).
ON_REQUEST = ("bundle",)


def command(step: tuple[str, ...]) -> str:
    """The shell form of a step, as the README writes it."""
    return "python " + " ".join(step)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--list", action="store_true", help="print the commands and stop")
    ap.add_argument("--only", help="comma-separated step names: " + ", ".join(n for n, _ in STEPS))
    args = ap.parse_args(argv)
    names = [n for n, _ in STEPS]
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            print(f"unknown step(s) {', '.join(unknown)}; steps: {', '.join(names)}",
                  file=sys.stderr)
            return 2
    else:
        wanted = [n for n in names if n not in ON_REQUEST]
    steps = [(n, s) for n, s in STEPS if n in wanted]
    if args.list:
        for name, step in steps:
            print(f"{name}: {command(step)}")
        return 0
    for name, step in steps:
        print(f"== {name}: {command(step)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run([sys.executable, *step], cwd=ROOT, check=False).returncode
        print(f"== {name}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc != 0:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
