"""Feature tables: LightCurves batches, files, metadata, NaN summary, CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from features import (
    FEATURE_SET_VERSION,
    METADATA_KEY,
    PeriodSearchConfig,
    default_extractor,
    extract_features,
    extract_features_file,
    feature_set_version,
    find_period,
    read_features,
)
from flows.cli import main
from pipeline.contract import ColumnMap
from pipeline.errors import InputError
from pipeline.lightcurves import LightCurves
from tests.features.synthetic import crts_times, sinusoid


def _frame(rng, bands=("g", "r")):
    """Three objects: periodic in all bands, one short band, one flat band."""
    rows = []
    for k, period in enumerate([0.3712, 2.345, 0.6543]):
        t = crts_times(rng, n_visits=30)
        for j, b in enumerate(bands):
            sel = np.arange(t.size) % len(bands) == j
            tt = t[sel]
            m, s = sinusoid(tt, period, 0.3, rng)
            m = m + 0.5 * j
            if k == 1 and b == bands[-1]:
                tt, m, s = tt[:5], m[:5], s[:5]  # too few points in this band
            if k == 2 and b == bands[0]:
                m = np.full(tt.size, 16.0)  # flat in this band
            rows.append(pd.DataFrame({"object_id": f"o{k}", "band": b, "t": tt, "mag": m,
                                      "mag_err": s}))
    return pd.concat(rows, ignore_index=True).sort_values(["object_id", "band", "t"],
                                                          ignore_index=True)


@pytest.fixture(scope="module")
def frame():
    return _frame(np.random.default_rng(5))


def test_extract_features_multiband(frame):
    lcs = LightCurves.from_frame(frame)
    tab = extract_features(lcs)
    ex = default_extractor()
    assert list(tab["object_id"]) == ["o0", "o1", "o2"]
    feats = tab.attrs["feature_columns"]
    assert len(feats) == 2 * ex.size + 5 + 2 + 1
    assert {"g:period", "r:fourier_r21", "multiband:period", "multiband:amp_r",
            "colour:g-r"} <= set(feats)
    assert tab.attrs["feature_set_version"] == FEATURE_SET_VERSION
    # values equal the per-band extractor on the same arrays
    sel = (frame.object_id == "o0") & (frame.band == "r")
    one = ex(*(frame.loc[sel, c].to_numpy() for c in ("t", "mag", "mag_err")))
    np.testing.assert_allclose(tab.loc[0, [f"r:{n}" for n in ex.names]].to_numpy(float), one,
                               equal_nan=True)
    # joint period: the multi-band search on all rows of the object
    o0 = frame[frame.object_id == "o0"]
    assert tab.loc[0, "multiband:period"] == pytest.approx(0.3712, rel=1e-3)
    # colour: difference of median magnitudes
    med = o0.groupby("band").mag.median()
    assert tab.loc[0, "colour:g-r"] == pytest.approx(med["g"] - med["r"])
    # NaN: o1's short r band, o2's flat g band; all counted in the summary
    s = tab.attrs["summary"]
    assert np.isnan(tab.loc[1, "r:period"]) and np.isnan(tab.loc[2, "g:period"])
    assert s["n_series_below_min_points"]["PeriodicFeatures"] == 1
    assert s["n_series_flat"] == 1
    assert s["nan_counts"]["r:period"] == 1 and s["nan_counts"]["g:period"] == 1
    assert s["n_values_nan"] == sum(s["nan_counts"].values())
    assert int(tab[[c for c in feats]].isna().sum().sum()) == s["n_values_nan"]
    assert list(tab["r:n_points"]) == [(frame.object_id.eq(o) & frame.band.eq("r")).sum()
                                       for o in ("o0", "o1", "o2")]
    # one-band objects in a two-band table: joint period from that band alone
    assert tab.loc[1, "multiband:period"] == pytest.approx(tab.loc[1, "g:period"])


def test_single_band_table_has_no_multiband_columns(frame):
    lcs = LightCurves.from_frame(frame[frame.band == "g"].reset_index(drop=True))
    tab = extract_features(lcs)
    assert not any(c.startswith(("multiband:", "colour:")) for c in tab.columns)
    assert tab.attrs["summary"]["bands"] == ["g"]


def test_file_roundtrip_metadata_and_jobs(tmp_path, frame):
    src = tmp_path / "lc.parquet"
    # raw input: grouped by object (streaming needs that) but unsorted within objects
    shuffled = frame.sample(frac=1.0, random_state=0)
    shuffled.sort_values("object_id", kind="stable").to_parquet(src)
    out1, out2 = tmp_path / "f1.parquet", tmp_path / "f2.parquet"
    s1 = extract_features_file(src, out1, chunk_rows=150)
    extract_features_file(src, out2, chunk_rows=150, n_jobs=2)
    t1, meta = read_features(out1)
    t2, _ = read_features(out2)
    pd.testing.assert_frame_equal(t1, t2)
    assert s1["n_objects"] == 3 and s1["cleaning"]["rows_in"] == len(frame)
    assert meta["feature_set_version"] == FEATURE_SET_VERSION
    assert meta["summary"]["nan_counts"] == s1["nan_counts"]
    assert set(meta["feature_columns"]) <= set(t1.columns)
    assert meta["units"]["g:period"] == "day"
    raw = pq.read_schema(out1).metadata
    assert METADATA_KEY.encode() in raw


def test_custom_search_changes_version():
    assert feature_set_version(PeriodSearchConfig()) == FEATURE_SET_VERSION
    v = feature_set_version(PeriodSearchConfig(period_max=500.0))
    assert v.startswith(FEATURE_SET_VERSION + "+") and v != FEATURE_SET_VERSION


def test_read_features_rejects_other_parquet(tmp_path):
    p = tmp_path / "x.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(p)
    with pytest.raises(InputError, match="not an lcpipe feature table"):
        read_features(p)


def test_cli_features(tmp_path, frame, capsys):
    src = tmp_path / "lc.parquet"
    frame.to_parquet(src)
    out = tmp_path / "feat.parquet"
    assert main(["features", str(src), "-o", str(out), "--bands", "r,g"]) == 0
    text = capsys.readouterr().out
    assert "3 objects" in text and "NaN" in text
    tab, meta = read_features(out)
    assert meta["bands"] == ["r", "g"] and "colour:r-g" in tab.columns


@pytest.mark.slow
def test_crts_sample_periods(crts_dir):
    """Real CRTS RRab: the period search mostly lands in the RRab range (0.4-1 d).

    Not always: one visit a night at nearly the same hour angle makes ``f`` and
    ``f + 1/sidereal day`` almost degenerate, and for about a fifth of CRTS RRab
    the alias wins even with the multi-harmonic choice (about 30% without it).
    """
    from pipeline.labels import read_labels
    from pipeline.lightcurves import read_lightcurves

    labels = read_labels(crts_dir / "labels.csv")
    lcs = read_lightcurves(crts_dir / "lightcurves.parquet", ColumnMap.from_spec("crts"))
    rrab = set(labels[labels == "RRab"].index[:60])
    periods = [find_period(t, m, s).period for oid, _, t, m, s in lcs if oid in rrab]
    assert len(periods) == 60
    assert np.mean([(0.4 < p < 1.0) for p in periods]) > 0.7


@pytest.mark.slow
def test_ztf_multiband_period_beats_single_bands(ztf_dir, tmp_path):
    """Real two-band ZTF light curves: the joint period matches the catalogue period (or its
    half/double, as for eclipsing binaries) at least as often as either band alone."""
    out = tmp_path / "ztf.parquet"
    s = extract_features_file(ztf_dir / "lightcurves.parquet", out,
                              cmap=ColumnMap.from_spec("ztf"))
    assert s["bands"] == ["g", "r"] and s["n_objects"] == 25
    tab, _ = read_features(out)
    cat = pd.read_csv(ztf_dir / "labels.csv").set_index("oid")["period"]
    tab = tab.set_index("object_id").join(cat).dropna(subset=["period"])

    def hits(col):
        r = tab[col] / tab["period"]
        return int(sum(np.isclose(r, x, rtol=0.01).sum() for x in (0.5, 1.0, 2.0)))

    joint = hits("multiband:period")
    assert joint >= max(hits("g:period"), hits("r:period"))
    assert joint >= 8
    assert s["n_objects_missing_band"]["r"] == 2  # counted, not dropped


def test_process_pool_works_in_a_forked_child(tmp_path):
    """A process forked after the shared feature pool exists (mutmut, a forking server)
    starts its own pool instead of waiting forever on the parent's."""
    import subprocess
    import sys
    import textwrap

    _frame(np.random.default_rng(5)).to_parquet(tmp_path / "lc.parquet")
    script = tmp_path / "fork.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from features import extract_features_file
        if __name__ == "__main__":
            d = {str(tmp_path)!r}
            extract_features_file(d + "/lc.parquet", d + "/a.parquet", n_jobs=2)
            pid = os.fork()
            if pid == 0:
                signal.alarm(90)
                extract_features_file(d + "/lc.parquet", d + "/b.parquet", n_jobs=2)
                os._exit(0)
            _, status = os.waitpid(pid, 0)
            sys.exit(0 if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 else 3)
    """))
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=240)
    assert res.returncode == 0, res.stderr[-2000:]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"),
                                  pd.read_parquet(tmp_path / "b.parquet"))


def test_shutdown_pools_leaves_no_manager_thread(tmp_path, frame):
    """After an interrupted run stops the shared pool, its manager thread has finished, so
    CPython 3.11's exit hook cannot write to the pipe it closes (a 'Bad file descriptor'
    traceback after Ctrl-C, seen under load)."""
    from features import api

    frame.sort_values("object_id", kind="stable").to_parquet(tmp_path / "lc.parquet")
    extract_features_file(tmp_path / "lc.parquet", tmp_path / "f.parquet", n_jobs=2)
    pool = api._POOLS[2]
    manager = pool._executor_manager_thread
    assert manager is not None and manager.is_alive()
    api.shutdown_pools()
    assert not manager.is_alive() and 2 not in api._POOLS
    assert manager.thread_wakeup._closed
