"""Robustness of predictions to the measurement errors (models/robustness.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("keras")

from models.robustness import error_robustness, perturbed  # noqa: E402
from pipeline.demo import sample_paths  # noqa: E402
from pipeline.lightcurves import LightCurves, read_lightcurves  # noqa: E402


@pytest.fixture(scope="module")
def twelve() -> LightCurves:
    lcs = read_lightcurves(sample_paths()["lightcurves"])
    keep = np.isin(lcs.object_id, np.unique(lcs.object_id)[:12])
    rows = np.concatenate([np.arange(lcs.offsets[i], lcs.offsets[i + 1])
                           for i in np.flatnonzero(keep)])
    sizes = np.diff(lcs.offsets)[keep]
    return LightCurves(object_id=lcs.object_id[keep], band=lcs.band[keep],
                       offsets=np.r_[0, np.cumsum(sizes)].astype(np.int64), t=lcs.t[rows],
                       mag=lcs.mag[rows], mag_err=lcs.mag_err[rows])


def _scaled(lcs: LightCurves, factor: float) -> LightCurves:
    return LightCurves(object_id=lcs.object_id, band=lcs.band, offsets=lcs.offsets, t=lcs.t,
                       mag=lcs.mag, mag_err=lcs.mag_err * factor)


def test_redraws_follow_the_error_bars(twelve):
    """mag - measured, in units of mag_err, is standard normal; times and errors kept."""
    draws = np.stack([perturbed(twelve, np.random.default_rng(s)).mag for s in range(20)])
    z = (draws - twelve.mag) / twelve.mag_err
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    d = perturbed(twelve, np.random.default_rng(0))
    assert d.t is twelve.t and d.mag_err is twelve.mag_err


def test_negligible_errors_keep_every_answer_and_large_ones_do_not(twelve, tmp_path):
    """Errors scaled to 1e-9 of their size: a model of the light curves cannot change its
    answer (every model fully stable, probabilities unchanged). Scaled 30x (0.3-3 mag of
    noise): the forest changes some answers. The per-class table is the mean of the
    per-object one."""
    objs, classes, info = error_robustness("crts", _scaled(twelve, 1e-9), tmp_path / "a", k=2)
    assert info["objects"] == 12 and len(objs) == 12 * 3  # forest, cnn, rpca_nearest
    assert (objs["stable_fraction"] == 1.0).all()
    prob = objs["probability_std"].dropna()
    assert len(prob) == 24 and (prob < 1e-4).all()  # float32 network outputs
    noisy, classes, _ = error_robustness("crts", _scaled(twelve, 30.0), tmp_path / "b", k=2,
                                         seed=1)
    forest = noisy[noisy["model"] == "forest"]
    assert forest["stable_fraction"].mean() < 1.0
    assert set(noisy["stable_fraction"]) <= {0.0, 0.5, 1.0}
    per_class = classes[classes["predicted_class"] != "__overall__"]
    for col, how in (("stable_fraction", "mean"), ("probability_std", "mean")):
        ref = noisy.groupby(["model", "predicted_class"])[col].agg(how)
        got = per_class.set_index(["model", "predicted_class"])[col]
        pd.testing.assert_series_equal(got.sort_index(), ref.sort_index(), check_names=False)
    # one '__overall__' row per model, last, over all its objects
    for model, g in classes.groupby("model"):
        objs_m = noisy[noisy["model"] == model]
        last = g.iloc[-1]
        assert last["predicted_class"] == "__overall__" and last["objects"] == 12
        assert last["stable_fraction"] == pytest.approx(objs_m["stable_fraction"].mean())
        assert last["all_stable"] == pytest.approx((objs_m["stable_fraction"] == 1).mean())
        assert g.iloc[:-1]["objects"].sum() == 12
    rpca = classes[classes["model"] == "rpca_nearest"]
    assert rpca["probability_std"].isna().all()  # no probabilities: no spread


def test_batched_variants_equal_one_call_each(twelve, tmp_path):
    """Variants classified many per call (ids suffixed, split back) give the rows that
    classifying each variant alone gives."""
    from models.robustness import classify_variants

    rng = np.random.default_rng(3)
    variants = [twelve, perturbed(twelve, rng), perturbed(twelve, rng)]
    together = classify_variants("crts", variants, tmp_path / "all")
    alone = classify_variants("crts", variants, tmp_path / "one", max_objects=12)
    assert len(together) == len(alone) == 3
    for a, b in zip(together, alone, strict=True):
        assert sorted(a["object_id"].unique()) == sorted(np.unique(twelve.object_id))
        pd.testing.assert_frame_equal(a.sort_values(["object_id", "model"]).reset_index(drop=True),
                                      b.sort_values(["object_id", "model"]).reset_index(drop=True))


def test_cadence_accuracy_against_an_independent_count(twelve, tmp_path):
    """Fraction 1.0 is the light curves as given (agreement 1); the accuracy of each
    row is recounted from the classified thinned copies; the kept fraction of points is
    near the asked one; without labels only the agreement is filled."""
    from models.representations import subsample_lightcurves
    from models.robustness import cadence_robustness, classify_variants

    ids = np.unique(twelve.object_id)
    labels = pd.Series(np.where(np.arange(len(ids)) % 2 == 0, "EW", "RRab"), index=ids)
    table, info = cadence_robustness("crts", twelve, tmp_path / "c", (0.6,), labels=labels,
                                     seed=5)
    assert info["objects"] == 12
    assert set(table["fraction_kept"]) == {1.0, 0.6}
    full = table[table["fraction_kept"] == 1.0]
    assert (full["agreement"] == 1.0).all() and (full["points_kept"] == 1.0).all()
    # independent: thin with the same seed, classify, count right answers by hand
    thin, _ = subsample_lightcurves(twelve, 1, (0.6, 0.6), min_points=10, seed=5)
    assert np.isclose(table.loc[table["fraction_kept"] == 0.6, "points_kept"].iloc[0],
                      len(thin.t) / len(twelve.t))
    assert 0.45 < len(thin.t) / len(twelve.t) < 0.75
    frame = classify_variants("crts", [thin], tmp_path / "ref")[0]
    frame["object_id"] = frame["object_id"].str.replace("#aug0", "", regex=False)
    for model, g in frame.groupby("model"):
        row = table[(table["model"] == model) & (table["fraction_kept"] == 0.6)].iloc[0]
        truth = labels.reindex(g["object_id"]).to_numpy()
        assert row["accuracy"] == pytest.approx(np.mean(truth == g["predicted_class"]))
        assert row["labelled"] == 12
    nolab, _ = cadence_robustness("crts", twelve, tmp_path / "d", (0.6,), seed=5)
    assert nolab["accuracy"].isna().all()
    pd.testing.assert_series_equal(nolab["agreement"], table["agreement"])
    # the answers on the full light curves handed in (as lcpipe robustness does): same table
    measured = classify_variants("crts", [twelve], tmp_path / "m")[0]
    again, _ = cadence_robustness("crts", twelve, tmp_path / "e", (0.6,), labels=labels,
                                  seed=5, measured=measured)
    pd.testing.assert_frame_equal(again, table)


def test_cli_writes_a_report_run(twelve, tmp_path, capsys):
    """lcpipe robustness writes one run into a report folder: its runs row (flow
    'robustness', the bundle's model hashes), the per-object and per-class stability tables,
    the cadence table and the CNN's adversarial tables, read back by DuckDB the way a user
    would; the per-class adversarial '__overall__' row is recomputed from the objects; a
    second run is appended beside the first."""
    import duckdb
    import pyarrow.parquet as pq

    from flows.cli import main
    from models.bundle import load_bundle
    from pipeline.reports import list_runs, read_report
    from pipeline.validate import series_to_arrow

    data = tmp_path / "twelve.parquet"
    pq.write_table(series_to_arrow(twelve), data)
    out = tmp_path / "rob"
    assert main(["robustness", str(data), "--model", "crts", "-o", str(out), "-k", "2",
                 "--adversarial", "--cadence", "0.6", "--run-id", "rob1"]) == 0
    printed = capsys.readouterr().out
    assert "Stability under 2 redraws" in printed and "Adversarial check" in printed
    runs = list_runs(out)
    assert list(runs["run_id"]) == ["rob1"] and runs["flow"].iloc[0] == "robustness"
    assert set(json.loads(runs["model_hashes"].iloc[0])) == set(load_bundle("crts").models)
    assert runs["objects_classified"].iloc[0] == 12
    objs = read_report(out, "robustness_objects", "rob1")
    assert len(objs) == 12 * objs["model"].nunique() and (objs["draws"] == 2).all()
    flips = read_report(out, "adversarial_objects", "rob1")
    assert sorted(flips["object_id"]) == sorted(np.unique(twelve.object_id))
    assert set(flips["model"]) == {"cnn"}
    cnn = objs.query("model == 'cnn'")
    assert (flips.set_index("object_id")["predicted_class"].sort_index()
            == cnn.set_index("object_id")["predicted_class"].sort_index()).all()
    summary = duckdb.sql(
        f"SELECT * FROM read_parquet('{out}/adversarial_classes/*/*.parquet', "
        "hive_partitioning = true) WHERE predicted_class = '__overall__'").df()
    row = summary.iloc[0]
    assert row["run_id"] == "rob1" and row["model"] == "cnn"
    v = np.where(flips["flip_sigma"].isna(), np.inf, flips["flip_sigma"].astype(float))
    assert row["objects"] == 12 and row["median_flip_sigma"] == np.median(v)
    assert row["within_1_sigma"] == pytest.approx((flips["flip_sigma"] <= 1).mean())
    cad = read_report(out, "cadence", "rob1")
    assert sorted(set(cad["fraction_kept"])) == [0.6, 1.0]
    assert (cad.loc[cad["fraction_kept"] == 1.0, "agreement"] == 1.0).all()
    assert main(["robustness", str(data), "--model", "crts", "-o", str(out), "-k", "1",
                 "--run-id", "rob2"]) == 0
    assert list(list_runs(out)["run_id"]) == ["rob1", "rob2"]
    assert set(read_report(out, "robustness_classes")["run_id"]) == {"rob1", "rob2"}
