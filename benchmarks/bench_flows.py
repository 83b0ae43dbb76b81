"""Flow benchmark: the train flow on the shared CRTS set and the classify flow at scale.

Part 1, train (``--data``, default ``../shared/data/crts``): in fresh processes, one after
the other,

- the flow: ``lcpipe train --quiet`` with default settings (test-part evaluation, refit),
  under Prefect's ephemeral API (its start-up included in the wall time);
- the anchor: the same plain functions (:mod:`pipeline.chunks`, :mod:`models.training`,
  :mod:`models.reporting`, :mod:`models.bundle`) called in sequence without Prefect;

and prints the wall time per stage of each, and Prefect's overhead: (flow - anchor) / flow.
``--cv`` adds a flow run with ``--cv-folds 5``.

Part 2, classify (``--classify-sizes 2000,20000``): simulated light curves of ~300 points (the
CSS-like cadence of :mod:`pipeline.simulate`), each size classified by
``lcpipe classify --quiet`` with the bundle of part 1 (or ``--bundle``) in a fresh process;
prints light curves per second (whole command, and the chunk stage alone) and the peak
resident memory of the command's process and of its largest child (the Prefect server, the
feature workers); the ratio shows whether memory stays flat as the input grows.

Run: ``python benchmarks/bench_flows.py`` (about 15 minutes on 2 cores), or
``--skip-train --bundle crts --classify-sizes 1000`` for part 2 alone.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_CLASSIFY = """
import json, resource, sys
from flows.cli import main
rc = main(["classify", "--quiet", "--model", sys.argv[1], "--data", sys.argv[2], "-o", sys.argv[3]])
print(json.dumps({"rc": rc, "self_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "children_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))
"""

_ANCHOR = """
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
from models.bundle import write_bundle
from models.reporting import write_evaluation_reports
from models.settings import TrainSettings
from models.training import (MODELS, chunk_features, chunk_images, evaluate_model, fit_model,
                             image_grids, make_split)
from features.api import merge_feature_files
from pipeline.chunks import concat_parquet, ingest
from pipeline.contract import ColumnMap
from pipeline.dmdt import METADATA_KEY

data, labels, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
s = TrainSettings()
sec = {}
def lap(name, t=[time.perf_counter()]):
    now = time.perf_counter(); sec[name] = round(now - t[0], 2); t[0] = now
lap("imports")
ing = ingest(data, out / "ingest", ColumnMap(), None, s.chunk_size)
lap("ingest")
grids = image_grids(s.cnn_preset)
imgs = [chunk_images(c, out / "img" / str(i), list(dict.fromkeys(grids.values())), ing.bands)
        for i, c in enumerate(ing.chunks)]
feats = [chunk_features(c, out / "feat" / f"{i}.parquet", ing.bands, s.n_jobs)
         for i, c in enumerate(ing.chunks)]
lap("images_and_features")
paths = {"cnn_images": str(concat_parquet([d[grids["cnn"]] for d in imgs], out / "cnn.parquet",
                                          metadata_key=METADATA_KEY)),
         "rpca_images": str(concat_parquet([d[grids["rpca"]] for d in imgs],
                                           out / "rpca.parquet", metadata_key=METADATA_KEY)),
         "features": str(merge_feature_files(feats, out / "features.parquet"))}
split, counts = make_split(paths["features"], paths["cnn_images"], labels, out / "split.parquet",
                           s)
lap("merge_and_split")
ev = {}
for k in MODELS:
    ev[k] = evaluate_model(k, paths, split, s, out / "models", "anchor-run")
    lap(f"evaluate_{k}")
write_evaluation_reports(out / "reports", "anchor-run", [ev[k]["predictions"] for k in MODELS],
                         sorted(counts["class_counts"]), ev["rpca_nearest"]["model"])
lap("reports")
models = {k: fit_model(k, paths, split, s, out / "refit" / Path(ev[k]["model"]).name, "all")
          for k in MODELS}
lap("refit")
write_bundle(out / "bundle", models, {"classes": sorted(counts["class_counts"])})
lap("bundle")
sec["total"] = round(time.perf_counter() - t0, 2)
print(json.dumps(sec))
"""


def _run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Run ``cmd``; return (wall s, peak RSS bytes of the process tree's largest, stdout)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")
    return wall, usage.ru_maxrss * 1024, out


def _lcpipe(*args: str) -> list[str]:
    return [sys.executable, "-m", "flows.cli", *args]


def _stages_of(run_dir: Path) -> dict[str, float]:
    from pipeline.reports import list_runs

    runs = list_runs(run_dir / "reports")
    return json.loads(runs.iloc[-1]["stage_seconds"])


def _train(data: Path, work: Path, cv: bool) -> Path:
    lc, labels = data / "lightcurves.parquet", data / "labels.csv"
    flow_dir = work / "flow"
    wall_f, rss_f, _ = _run(_lcpipe("train", "--quiet", "--data", str(lc), "--labels",
                                    str(labels), "-o", str(flow_dir)))
    st_f = _stages_of(flow_dir)
    wall_a, rss_a, out = _run([sys.executable, "-c", _ANCHOR, str(lc), str(labels),
                               str(work / "anchor")])
    st_a = json.loads(out.strip().splitlines()[-1])
    print(f"\nTrain flow on {lc} (default settings: test part, refit), fresh processes")
    print(f"{'stage':24s} {'flow s':>8s} {'plain s':>8s}")
    for k in dict.fromkeys([*st_f, *st_a]):
        print(f"{k:24s} {st_f.get(k, float('nan')):8.1f} {st_a.get(k, float('nan')):8.1f}")
    print(f"{'wall (whole process)':24s} {wall_f:8.1f} {wall_a:8.1f}   "
          f"(flow includes Prefect's ephemeral API start)")
    print(f"peak RSS: flow {rss_f / 2**30:.2f} GiB, plain {rss_a / 2**30:.2f} GiB")
    print(f"Prefect overhead: {(wall_f - wall_a) / wall_f:+.1%} of the flow's wall time "
          f"(flow / plain = {wall_f / wall_a:.2f}x; target < 10 %, flow < 300 s)")
    if cv:
        wall_cv, _, _ = _run(_lcpipe("train", "--quiet", "--data", str(lc), "--labels",
                                     str(labels), "-o", str(work / "flow_cv"), "--cv-folds", "5"))
        print(f"train flow with --cv-folds 5: {wall_cv:.0f} s "
              f"(stages {_stages_of(work / 'flow_cv')})")
    bundles = sorted((flow_dir / "bundles").iterdir())
    return bundles[-1]


def _simulate(n: int, out: Path, band: str) -> Path:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pipeline.simulate import SurveyConfig, simulate_survey

    simulate_survey(n, out, seed=1, config=SurveyConfig(min_points=290, max_points=340))
    t = pq.read_table(out / "lightcurves.parquet")
    i = t.schema.get_field_index("band")
    t = t.set_column(i, "band", pc.cast(pa.array([band] * t.num_rows), t.schema.field(i).type))
    p = out / "lc.parquet"
    pq.write_table(t, p)
    return p


def _classify(bundle: str, sizes: list[int], work: Path) -> None:
    from models.bundle import load_bundle

    band = load_bundle(bundle).info["bands"][0]
    print(f"\nClassify flow, simulated light curves of ~300 points (band set to {band!r})")
    print(f"{'objects':>8s} {'rows':>10s} {'wall s':>7s} {'LC/s':>7s} {'chunks LC/s':>11s} "
          f"{'main RSS GiB':>12s} {'children GiB':>12s}")
    rss = []
    for m in sizes:
        lc = _simulate(m, work / f"sim{m}", band)
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(lc).metadata.num_rows
        out = work / f"pred{m}" / "pred.parquet"
        wall, _, text = _run([sys.executable, "-c", _CLASSIFY, bundle, str(lc), str(out)])
        mem = json.loads(text.strip().splitlines()[-1])
        peak = mem["self_rss"]
        from models.predictions import read_predictions

        pred, _ = read_predictions(out)
        n_obj = pred["object_id"].nunique()
        stages = _classify_stages(out)
        print(f"{n_obj:8d} {rows:10d} {wall:7.1f} {n_obj / wall:7.0f} "
              f"{n_obj / stages:11.0f} {peak / 2**30:12.2f} {mem['children_rss'] / 2**30:12.2f}")
        rss.append(peak)
    print(f"peak memory of the main process, {sizes[-1]} / {sizes[0]} light curves: "
          f"{rss[-1] / rss[0]:.2f} "
          "(flat = about 1; children: the Prefect server and the feature workers, largest "
          "one; target >= 250 LC/s)")


def _classify_stages(out: Path) -> float:
    """Seconds of the chunk stage, from the classify log file the command leaves."""
    p = out.with_name(out.stem + ".work") / "last_run.json"
    return json.loads(p.read_text())["stage_seconds"]["classify_chunks"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "crts"),
                    help="folder with lightcurves.parquet and labels.csv")
    ap.add_argument("--skip-train", action="store_true", help="part 2 only")
    ap.add_argument("--cv", action="store_true", help="also time a 5-fold CV train run")
    ap.add_argument("--bundle", default=None, help="bundle for part 2 (default: part 1's)")
    ap.add_argument("--classify-sizes", default="2000,20000",
                    help="comma-separated numbers of simulated light curves (default 2000,20000)")
    ap.add_argument("--work", default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args(argv)
    import platform

    print(f"CPU: {platform.machine()}, {os.cpu_count()} logical cores; python "
          f"{platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="bench_flows.") as tmp:
        work = Path(args.work or tmp)
        bundle = args.bundle
        if not args.skip_train:
            b = _train(Path(args.data), work / "train", args.cv)
            bundle = bundle or str(b)
        sizes = [int(x) for x in args.classify_sizes.split(",") if x.strip()]
        if sizes:
            _classify(bundle or "crts", sizes, work / "classify")
    return 0


if __name__ == "__main__":
    sys.exit(main())
