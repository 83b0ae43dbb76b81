"""Build the model bundle shipped with lcpipe: the train flow on the full shared CRTS set.

Usage::

    python benchmarks/build_crts_bundle.py [--data ../shared/data/crts] [--work lcpipe-out/crts]

Runs ``lcpipe train`` with default settings (all 16 classes, the ``best`` CNN, test part
20 %, models refit on all 5,757 labelled objects), copies the run's bundle to
``models/data/crts_bundle/`` (what ``lcpipe classify --model crts`` loads) and writes its
``README.md`` with the training data, the test-part scores of the run and the file sizes.
Refuses a bundle over 20 MB.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "models" / "data" / "crts_bundle"
LIMIT_BYTES = 20 * 1024 * 1024


def _size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "crts"))
    ap.add_argument("--work", default=str(ROOT / "lcpipe-out" / "crts"))
    args = ap.parse_args(argv)
    data, work = Path(args.data), Path(args.work)
    cmd = [sys.executable, "-m", "flows.cli", "train", "--quiet",
           "--data", str(data / "lightcurves.parquet"), "--labels", str(data / "labels.csv"),
           "-o", str(work)]
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    from models.bundle import load_bundle, resolve_bundle

    src = resolve_bundle(work)
    size = _size(src)
    if size > LIMIT_BYTES:
        raise SystemExit(f"bundle {src} is {size / 2**20:.1f} MiB > 20 MiB: not shipped")
    tmp = TARGET.with_name(".crts_bundle.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    info = json.loads((tmp / "bundle.json").read_text())
    rows = "\n".join(
        f"| {s['model']} | {s['accuracy']:.3f} | {s['balanced_accuracy']:.3f} | {s['f1']:.3f} "
        f"| {'-' if s['log_loss'] is None else format(s['log_loss'], '.3f')} |"
        for s in sorted(info["test_scores"], key=lambda s: -s["accuracy"]))
    files = "\n".join(f"- `{f.relative_to(tmp)}`: {f.stat().st_size / 2**20:.1f} MiB"
                      for f in sorted(tmp.rglob("*")) if f.is_file())
    counts = ", ".join(f"{c} {n}" for c, n in sorted(info["class_counts"].items(),
                                                     key=lambda kv: -kv[1]))
    (tmp / "README.md").write_text(f"""# Shipped bundle: CRTS, 16 classes

Built by `python benchmarks/build_crts_bundle.py` (the train flow, default settings) from the
shared CRTS set: 5,757 real CRTS light curves (Catalina Surveys; Drake et al. 2009, 2014),
labelled with the 16 classes of the CRTS periodic-variable catalogue, converted from the public
repository kvmu/lightcurve-classification (MIT licence, (c) 2017 Kevin Multani); see
`pipeline/data/crts_sample/README.md` for the licence text. Cite those when publishing results.

Run `{info['run_id']}`, lcpipe {info['lcpipe_version']}. Models refit on
{info['trained_on']} ({info['n_objects']}): {counts}.
Band `{', '.join(info['bands'])}`; CNN preset `{info['cnn']['preset']}`
({info['cnn']['arch']} on the `{info['cnn']['representation']}` representation).

Scores of the same settings on the run's held-out test part (20 % of each class, seed 0),
before the refit:

| model | accuracy | balanced accuracy | macro-F1 | log loss |
|---|---:|---:|---:|---:|
{rows}

Files ({size / 2**20:.1f} MiB in all; the forest is stored DEFLATE-compressed, all 500 trees):

{files}

Use: `lcpipe classify --model crts --data IN -o OUT.parquet` (light curves in band
`{info['bands'][0]}`, or renamed to it with `--bands`, e.g. `--bands r=CSS_V`).
""")
    if TARGET.exists():
        shutil.rmtree(TARGET)
    tmp.rename(TARGET)
    load_bundle("crts")
    print(f"shipped bundle -> {TARGET} ({_size(TARGET) / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
