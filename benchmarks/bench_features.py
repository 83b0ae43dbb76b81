"""Feature-extraction speed: lcpipe vs light-curve's raw Extractor vs feets, one process.

Usage::

    python benchmarks/bench_features.py [--n-lc 40] [--n-feets 2] [--crts 100]

Light curves are seeded, CRTS-like (8-year baseline, seasons, one visit of 4
exposures in ~30 min per night) with n = 300 and 1,000 points; all timings
are single-threaded (per core). Measured, in the same run:

- ``lcpipe``: the full per-band feature set (light-curve statistics + period
  search 0.05-1000 d with coarse grid and refinement + Fourier + doubled
  period), ``features.default_extractor()``;
- ``lc raw``: ``light_curve.Extractor`` of the same light-curve features,
  called directly (the anchor of lcpipe's own overhead);
- ``lc raw + periodogram``: the same plus light-curve's ``Periodogram`` on a
  grid reaching 0.05 d with >= 5 points per 1/T (what a plain light-curve
  user would run for the period);
- ``feets``: ``FeatureSpace(data=[magnitude, time, error])``, all its
  features, on a few light curves (it takes seconds each).

Timings are CPU seconds of this process (``time.process_time``), so other
load on a shared machine inflates them less than wall-clock time would.

Checks (the script fails if they do not hold): lcpipe's light-curve group
returns exactly the raw Extractor's values; lcpipe's period search (with the
alias / multi-harmonic choices switched off, i.e. "highest peak") finds the
same peak as light-curve's dense periodogram for >= 90% of the synthetic
light curves; on real CRTS light curves (``--crts``) it finds the maximum of
its own dense grid (>= 95%) and a peak at least as high as light-curve's
(>= 95%; light-curve's periodogram ignores the errors and is computed
differently, so on real data its maximum can sit elsewhere); feets' Mean and
Std equal light-curve's.
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
           "RAYON_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features import (  # noqa: E402
    LightCurveFeatures,
    PeriodSearchConfig,
    check_lightcurve,
    default_extractor,
)
from features.lightcurve import default_lightcurve_features  # noqa: E402
from features.period import find_period, gls_power  # noqa: E402

BASELINE = 2900.0


def crts_like(rng: np.random.Generator, n_points: int) -> tuple[np.ndarray, ...]:
    """One seeded CRTS-like light curve with a random variable-star signal."""
    n_visits = n_points // 4
    nights = np.arange(int(BASELINE))
    nights = np.sort(rng.choice(nights[nights % 365 < 240], n_visits, replace=False))
    t = ((53500.0 + nights + rng.uniform(0.0, 0.4, n_visits))[:, None]
         + np.arange(4) * 0.0069).ravel()
    kind = rng.integers(3)
    period = float(np.exp(rng.uniform(np.log(0.1), np.log(300.0))))
    ph = np.mod(t / period, 1.0)
    if kind == 0:  # sinusoid
        m = 0.3 * np.sin(2 * np.pi * ph)
    elif kind == 1:  # sawtooth (RRab-like)
        m = 0.5 * (ph - 0.5) - 0.4 * (ph < 0.15) * (0.15 - ph) / 0.15
    else:  # eclipsing
        d = np.minimum(ph, 1 - ph)
        m = 0.6 * np.exp(-0.5 * (d / 0.05) ** 2) + 0.3 * np.exp(-0.5 * ((ph - 0.5) / 0.05) ** 2)
    sigma = np.full(t.size, 0.05)
    return t, 15.0 + m + rng.normal(0.0, 0.05, t.size), sigma


def _timed(fn) -> float:
    """CPU seconds of ``fn()`` in this process (robust to other load on the machine)."""
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def rate(fn, lcs, repeat: int = 1) -> float:
    """Light curves per CPU second of ``fn(t, m, s)`` (best of ``repeat`` passes)."""
    best = min(_timed(lambda: [fn(*lc) for lc in lcs]) for _ in range(repeat))
    return len(lcs) / best


def lc_dense_periodogram(baseline: float):
    """light-curve Periodogram, grid 0..20/d with >= 5 points per 1/T (power-of-two size)."""
    import light_curve as lc

    k = int(np.ceil(np.log2(20.0 * baseline * 5.0)))
    freqs = np.linspace(0.0, 2 * np.pi * 20.0, 2**k + 1)  # angular frequency
    return lc.Periodogram(peaks=1, freqs=freqs, fast=True), 2**k


_PLAIN = PeriodSearchConfig(alias_harmonics=0, choice_harmonics=1)  # "highest peak"


def agreement_with_light_curve(lcs, pg) -> tuple[float, float]:
    """Compare lcpipe's highest peak with light-curve's dense periodogram (both unweighted).

    Returns the fraction with the same peak (within 1/T) and the fraction where
    lcpipe's peak has at least the generalised-LS power of light-curve's peak
    (light-curve's periodogram is a different estimator, so on real data the
    two maxima can differ; lcpipe must then not be the worse one).
    """
    same = not_worse = 0
    for t, m, _ in lcs:
        fr, pw = pg.freq_power(t, m)
        f = fr / (2 * np.pi)
        ok = (f >= 1.0 / _PLAIN.period_max) & (f <= 1.0 / _PLAIN.period_min)
        f_lc = float(f[ok][np.argmax(pw[ok])])
        ours = find_period(t, m, None, _PLAIN)
        hit = abs(f_lc - ours.frequency) < 1.0 / (t[-1] - t[0])
        same += hit
        not_worse += hit or gls_power(t, m, None, [f_lc])[0] <= ours.power + 1e-9
    return same / len(lcs), not_worse / len(lcs)


def agreement_with_dense_grid(lcs) -> float:
    """Fraction where coarse-then-refine = maximum of a dense grid (10 points per 1/T)."""
    from features import _period_impl as impl

    same = 0
    for t, m, s in lcs:
        ours = find_period(t, m, s, _PLAIN)
        T = t[-1] - t[0]
        w, y = impl._weights(m, s, 0, t.size)
        df = 1.0 / (10.0 * T)
        f0 = 1.0 / _PLAIN.period_max
        nf = int((1.0 / _PLAIN.period_min - f0) / df) + 1
        dense = np.zeros(nf)
        impl.gls_accumulate(t, y, w, f0, df, nf, 1.0, dense, np.zeros((), np.float64))
        same += abs(f0 + np.argmax(dense) * df - ours.frequency) < 1.0 / T
    return same / len(lcs)


def crts_sample(n: int):
    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "crts"
    if not (root / "lightcurves.parquet").exists():
        return None
    from pipeline.contract import ColumnMap
    from pipeline.lightcurves import read_lightcurves

    lcs = read_lightcurves(root / "lightcurves.parquet", ColumnMap.from_spec("crts"))
    idx = np.random.default_rng(0).choice(len(lcs), n, replace=False)
    return [lcs.series(int(i))[2:] for i in idx]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-lc", type=int, default=40, help="light curves per size (lcpipe, lc)")
    ap.add_argument("--n-feets", type=int, default=2, help="light curves per size for feets")
    ap.add_argument("--crts", type=int, default=100,
                    help="real CRTS light curves for the period check (0: skip)")
    args = ap.parse_args(argv)

    import light_curve as lc

    rng = np.random.default_rng(2024)
    lcfeat = LightCurveFeatures()
    raw = lc.Extractor(*[f for f, _ in default_lightcurve_features()])
    full = default_extractor()
    pg, nfreq = lc_dense_periodogram(BASELINE)
    rows = []
    checks = []
    for n in (300, 1000):
        lcs = [crts_like(rng, n) for _ in range(args.n_lc)]
        full(*lcs[0])  # compile / warm up
        pg(*lcs[0])
        r_full = rate(full, lcs)
        # the three light-curve-only timings are short: interleave them, 21 passes, median
        passes = {"raw": [], "group": [], "batch": []}
        for _ in range(21):
            passes["raw"].append(_timed(lambda b=lcs: [raw(t, m, s, fill_value=np.nan,
                                                           sorted=True, check=False)
                                                       for t, m, s in b]))
            passes["group"].append(_timed(lambda b=lcs: [lcfeat(*x) for x in b]))
            passes["batch"].append(_timed(lambda b=lcs: lcfeat.many([check_lightcurve(*x)
                                                                     for x in b])))
        r_raw, r_group, r_batch = (len(lcs) / float(np.median(passes[k]))
                                   for k in ("raw", "group", "batch"))
        r_raw_pg = rate(lambda t, m, s: (raw(t, m, s, fill_value=np.nan, sorted=True,
                                             check=False), pg(t, m, s)), lcs[: max(5, n // 30)])
        for t, m, s in lcs[:5]:
            np.testing.assert_allclose(lcfeat(t, m, s),
                                       raw(t, m, s, fill_value=np.nan, sorted=True, check=False),
                                       rtol=0, atol=0, equal_nan=True)
        same, not_worse = agreement_with_light_curve(lcs[:20], pg)
        checks.append((f"synthetic n={n}: same peak as light-curve's dense periodogram", same,
                       0.9))
        r_feets = np.nan
        if args.n_feets > 0:
            import feets

            warnings.filterwarnings("ignore")
            fs = feets.FeatureSpace(data=["magnitude", "time", "error"])
            sub = lcs[: args.n_feets]
            t0 = time.perf_counter()
            res = [fs.extract(time=t, magnitude=m, error=s)[0] for t, m, s in sub]
            r_feets = len(sub) / (time.perf_counter() - t0)
            for (t, m, s), d in zip(sub, res, strict=True):
                v = dict(zip(lcfeat.names, lcfeat(t, m, s), strict=True))
                np.testing.assert_allclose([d["Mean"], d["Std"]],
                                           [v["mean"], v["standard_deviation"]], rtol=1e-9)
            n_feets = len(res[0])
        rows.append((n, r_full, r_group, r_batch, r_raw, r_raw_pg, r_feets))

    if args.crts:
        real = crts_sample(args.crts)
        if real is not None:
            pg_real, _ = lc_dense_periodogram(3200.0)
            same, not_worse = agreement_with_light_curve(real, pg_real)
            checks.append((f"real CRTS ({args.crts} LCs): same peak as lcpipe's own dense GLS "
                           "grid (10 points per 1/T)", agreement_with_dense_grid(real), 0.95))
            checks.append((f"real CRTS ({args.crts} LCs): lcpipe peak at least as high (GLS "
                           "power) as light-curve's dense-periodogram peak", not_worse, 0.95))
            checks.append((f"real CRTS ({args.crts} LCs): same peak as light-curve's dense "
                           "periodogram (different estimator; information)", same, 0.0))

    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs; "
          f"single-threaded timings (1 thread per library); light-curve {lc.__version__}")
    print(f"feature set: lcpipe {full.size} per band (light-curve group {lcfeat.size}); "
          f"feets {n_feets if args.n_feets else '-'} features; light-curve periodogram grid "
          f"{nfreq} frequencies up to 20/d\n")
    print("| n points | lcpipe full set | light-curve raw Extractor, same lc features "
          "| lcpipe lc group, per call (overhead) | lcpipe lc group, batched as in files "
          "(overhead) | light-curve raw + dense periodogram | lcpipe / that | feets (all) "
          "| lcpipe / feets |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, r_full, r_group, r_batch, r_raw, r_raw_pg, r_feets in rows:
        print(f"| {n} | {r_full:.0f} | {r_raw:.0f} | {r_group:.0f} "
              f"({100 * (r_raw / r_group - 1):+.0f}%) | {r_batch:.0f} "
              f"({100 * (r_raw / r_batch - 1):+.0f}%) | {r_raw_pg:.1f} | "
              f"{r_full / r_raw_pg:.1f}x | {r_feets:.3f} | {r_full / r_feets:.0f}x |")
    print("\n(light curves per CPU second of this single-threaded process, i.e. per core)")
    print()
    ok = True
    for name, value, need in checks:
        good = value >= need
        ok &= good
        print(f"check: {name}: {100 * value:.0f}% (need >= {100 * need:.0f}%) "
              f"{'ok' if good else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
