"""Adversarial check of the CNN: the smallest magnitude change that flips its answer.

The network sees a dm-dt histogram of a light curve, which is not differentiable in the
magnitudes, so the search runs in light-curve space. Each magnitude moves by

    delta_i = eps * sigma_i * s_i,    s_i in {-1, 0, +1},

``sigma_i`` the point's own error bar [mag] and ``eps`` [sigma] a value of an increasing
grid (default :data:`DEFAULT_EPS`, 0.1 to 3 sigma). At each ``eps``, and for ``rounds``
rounds, ``tries`` sign patterns per object are classified (every candidate copy of a batch
of objects in one dm-dt computation and one ``predict_proba`` call):

* dense patterns: every point moves, with a random sign;
* sparse patterns: a random few (1 to ``max_points``) points move;
* guided patterns (after the first evaluation): the incumbent, i.e. the pattern that lowered
  the margin ``p_c - max_{j != c} p_j`` of the predicted class ``c`` most so far, and
  random mutations of it (a random 2-25 % of its entries redrawn in {-1, 0, +1}); a
  (1 + lambda) hill climb on the margin that carries the best pattern from one ``eps``
  to the next.

An object's flip size ``flip_sigma`` is the smallest grid ``eps`` at which a candidate
changes the predicted class. Every moved point then moves by exactly ``eps`` of its error
bars, so the flip size is an **upper bound** on the smallest change, in the L-infinity norm
in units of the error bars, that flips the answer; NaN when no candidate up to the largest
``eps`` flips it (which proves nothing: a larger search could still find one).

Networks searched: the image-only CNN (:class:`models.cnn.DmDtCNN`) and the hybrid network
(:class:`models.hybrid.HybridCNN`). A changed magnitude changes both the dm-dt image and the
light-curve features, so for the hybrid every candidate's features are **recomputed** from
its perturbed light curve (``features=``, a callable ``LightCurves -> feature table``;
:func:`classify_features` computes them as ``lcpipe classify`` does), never held at the
measured values. That is the cost of the hybrid search: features run at ~150 light curves
(series) per second per process on CRTS-like curves (~300 points; shorter ones faster),
against milliseconds for the images, so each ``eps`` step costs an object
``tries * rounds`` (default 64) candidate series per band, ~0.4 s per band and process; an
object that never flips goes through the whole grid, ~9 x 64 = 576 series, ~4 s per band and
process (an image-only search: a few ms).

What it does not say: that no smaller change flips the answer (it is a random and greedy
search on a grid, not a certificate), anything about changes to the times, the cadence or
the error bars themselves (only magnitudes move), or anything about the models of a bundle
that are not networks (the forest, the robust PCA and the stack are not searched).
Candidates are seeded per object (``numpy.random.default_rng([seed, object index])``), so
the result depends neither on the batch size nor on the other objects.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError, InputError
from pipeline.lightcurves import LightCurves
from pipeline.reports import OVERALL

from .representations import Representation, get_representation, images_to_inputs

__all__ = [
    "COLUMNS",
    "DEFAULT_EPS",
    "FlipSearch",
    "adversarial_check",
    "classify_features",
    "flip_search",
    "flip_sizes",
    "flip_summary",
    "median_flip_size",
]

#: A feature extractor: light curves -> feature table (one row per object, ``object_id``).
FeatureFn = Callable[[LightCurves], pd.DataFrame]

#: Default grid of perturbation sizes [units of each point's error bar].
DEFAULT_EPS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)

#: Columns of the per-object table (:func:`flip_sizes`).
COLUMNS: tuple[str, ...] = (
    "object_id", "predicted_class", "probability", "margin", "flip_sigma", "flipped_to",
    "flip_probability", "points_moved", "within_1_sigma", "candidates_tried")


@dataclass(frozen=True)
class FlipSearch:
    """Result of :func:`flip_search`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per object (:data:`COLUMNS`), see :func:`flip_sizes`.
    signs : ndarray of int8, shape (n_rows,)
        For each row of the light curves searched: the sign ``s_i`` of the flipping
        perturbation of its object (0 for points it leaves alone and for objects that
        did not flip).
    eps : tuple of float
        The grid searched [sigma].
    """

    table: pd.DataFrame
    signs: np.ndarray
    eps: tuple[float, ...]

    def perturbed_lightcurves(self, lcs: LightCurves) -> LightCurves:
        """The light curves searched with each flipped object's flipping change applied.

        ``mag + flip_sigma * mag_err * s`` [mag] per point (objects that did not flip are
        unchanged); times and errors are kept.

        Parameters
        ----------
        lcs : LightCurves
            The light curves given to :func:`flip_search`.
        """
        ids, obj_of_series, _ = _objects(lcs)
        if len(lcs.mag) != len(self.signs) or not np.array_equal(
                ids.astype(str), self.table["object_id"].to_numpy().astype(str)):
            raise InputError("<light curves>", "not the light curves this search ran on")
        obj_of_row = np.repeat(obj_of_series, lcs.n_points)
        size = np.nan_to_num(self.table["flip_sigma"].to_numpy(dtype=np.float64), nan=0.0)
        mag = lcs.mag + size[obj_of_row] * lcs.mag_err * self.signs
        return LightCurves(object_id=lcs.object_id, band=lcs.band, offsets=lcs.offsets,
                           t=lcs.t, mag=mag, mag_err=lcs.mag_err)


# --------------------------------------------------------------------------- checks


def _check_eps(eps: Sequence[float]) -> tuple[float, ...]:
    try:
        grid = np.asarray(eps, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"eps must be a sequence of numbers, got {eps!r}") from exc
    if grid.ndim != 1 or len(grid) == 0:
        raise ConfigError("eps must be a non-empty 1-D sequence of sizes [sigma]")
    if not np.all(np.isfinite(grid)) or not np.all(grid > 0):
        raise ConfigError(f"eps sizes must be finite and > 0 [sigma], got {list(grid)}")
    if np.any(np.diff(grid) <= 0):
        raise ConfigError(f"eps must be strictly increasing, got {list(grid)}")
    return tuple(float(e) for e in grid)


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class _Spec:
    """How a model's inputs are made from light curves."""

    rep: Representation
    bands: list[str]
    feature_names: list[str] | None = None
    feature_set_version: str | None = None
    features: FeatureFn | None = None


def _model_inputs(model: Any, features: FeatureFn | None = None) -> _Spec:
    """The representation, bands and (hybrid) features a fitted model's inputs need."""
    if not hasattr(model, "predict_proba") or not hasattr(model, "classes_"):
        raise ConfigError("the model must be a fitted classifier of network inputs "
                          "(predict_proba, classes_), e.g. a fitted models.cnn.DmDtCNN")
    meta = getattr(model, "input_meta_", None) or {}
    names = meta.get("feature_names")
    if names and features is None:
        raise ConfigError("the model also takes light-curve features (a hybrid network): "
                          "pass features=, a callable LightCurves -> feature table that the "
                          "search calls on every candidate light curve (e.g. "
                          "models.adversarial.classify_features(bands))")
    if not names and features is not None:
        raise ConfigError("the model takes no light-curve features (an image-only network): "
                          "features= would not be used; leave it out")
    if features is not None and not callable(features):
        raise ConfigError(f"features must be a callable LightCurves -> feature table, got "
                          f"{features!r}")
    preset, bands = meta.get("preset"), meta.get("bands")
    if preset is None or not bands:
        raise ConfigError("the model's input_meta_ names no representation ('preset') or "
                          "no bands: cannot make its inputs from light curves")
    version = meta.get("feature_set_version")
    return _Spec(get_representation(preset), [str(b) for b in bands],
                 [str(c) for c in names] if names else None,
                 None if version is None else str(version), features)


def _objects(lcs: LightCurves) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(object ids, object index of each series, first series of each object + end)."""
    oid = lcs.object_id
    new = np.ones(len(oid), dtype=bool)
    if len(oid):
        new[1:] = oid[1:] != oid[:-1]
    first = np.flatnonzero(new)
    return oid[first], np.cumsum(new) - 1, np.append(first, len(oid)).astype(np.int64)


# --------------------------------------------------------------------------- candidates


def _candidates(rng: np.random.Generator, n: int, tries: int, incumbent: np.ndarray | None,
                max_points: int) -> np.ndarray:
    """``tries`` sign patterns (int8, shape (tries, n)) for one object and round.

    With an incumbent: the incumbent itself, mutations of it (half the rest), then dense
    and sparse random patterns; without: dense and sparse only.
    """
    out = np.zeros((tries, n), dtype=np.int8)
    row = 0
    n_mut = 0
    if incumbent is not None:
        if tries >= 2:
            out[0] = incumbent
            row = 1
        n_mut = (tries - row) // 2
    rest = tries - row - n_mut
    n_dense = (rest + 1) // 2
    n_sparse = rest - n_dense
    if n_mut:
        rate = rng.uniform(0.02, 0.25, size=(n_mut, 1))
        redraw = rng.random((n_mut, n)) < rate
        redraw[np.arange(n_mut), rng.integers(0, n, size=n_mut)] = True  # >= 1 entry
        new = rng.integers(-1, 2, size=(n_mut, n), dtype=np.int8)
        out[row:row + n_mut] = np.where(redraw, new, incumbent[None, :])
        row += n_mut
    if n_dense:
        out[row:row + n_dense] = rng.integers(0, 2, size=(n_dense, n), dtype=np.int8) * 2 - 1
        row += n_dense
    if n_sparse:
        k = rng.integers(1, min(max_points, n) + 1, size=(n_sparse, 1))
        rank = rng.random((n_sparse, n)).argsort(axis=1).argsort(axis=1)
        sign = rng.integers(0, 2, size=(n_sparse, n), dtype=np.int8) * 2 - 1
        out[row:] = np.where(rank < k, sign, 0)
    return out



class _Batch:
    """Candidate copies of some objects, assembled into one :class:`LightCurves`."""

    def __init__(self, lcs: LightCurves, first: np.ndarray) -> None:
        self.lcs, self.first = lcs, first
        self.parts: list[tuple[np.ndarray, ...]] = []
        self.series_per_copy: list[int] = []
        self.n_copies: list[int] = []

    def rows(self, o: int) -> np.ndarray:
        """Rows of object ``o`` (all its series) in the light curves."""
        a, b = self.first[o], self.first[o + 1]
        return np.arange(self.lcs.offsets[a], self.lcs.offsets[b])

    def add(self, o: int, deltas: np.ndarray) -> None:
        """Copies of object ``o``, one per row of ``deltas`` (shape (k, n_rows_o)) [mag]."""
        lcs = self.lcs
        series = np.arange(self.first[o], self.first[o + 1])
        rows = self.rows(o)
        k = len(deltas)
        self.parts.append((np.tile(lcs.band[series], k), np.tile(lcs.n_points[series], k),
                           np.tile(lcs.t[rows], k), (lcs.mag[rows][None, :] + deltas).ravel(),
                           np.tile(lcs.mag_err[rows], k)))
        self.series_per_copy.append(len(series))
        self.n_copies.append(k)

    def lightcurves(self) -> LightCurves:
        """Every copy, in the order added, as light curves with object id = copy index."""
        per_copy = np.repeat(np.asarray(self.series_per_copy, dtype=np.int64),
                             np.asarray(self.n_copies, dtype=np.int64))
        copy_id = np.repeat(np.arange(len(per_copy), dtype=np.int64), per_copy)
        lengths = np.concatenate([p[1] for p in self.parts])
        return LightCurves(object_id=copy_id, band=np.concatenate([p[0] for p in self.parts]),
                           offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                           t=np.concatenate([p[2] for p in self.parts]),
                           mag=np.concatenate([p[3] for p in self.parts]),
                           mag_err=np.concatenate([p[4] for p in self.parts]))

    def inputs(self, spec: _Spec) -> Any:
        """Network inputs of every copy, in the order added: float32 images, or for a
        hybrid network the dict of images and recomputed features
        (:func:`models.hybrid.hybrid_inputs`)."""
        from pipeline.dmdt import compute_dmdt

        batch = self.lightcurves()
        X, _ = images_to_inputs(compute_dmdt(batch, spec.rep.bins, norm="counts",
                                             bands=spec.bands), spec.rep)
        if spec.features is None:
            return X
        from .hybrid import hybrid_inputs

        return hybrid_inputs(X, _feature_rows(spec, batch, int(sum(self.n_copies))))


def _feature_rows(spec: _Spec, batch: LightCurves, n: int) -> np.ndarray:
    """The model's feature columns for copies ``0 .. n-1`` of ``batch``, in copy order."""
    from .forest_files import check_feature_table
    from .training import _rows_of

    assert spec.features is not None and spec.feature_names is not None
    source = "<features of the candidate light curves>"
    frame = spec.features(batch)
    if not isinstance(frame, pd.DataFrame) or "object_id" not in frame.columns:
        raise ConfigError("the features callable must return a pandas.DataFrame with an "
                          f"object_id column, got {type(frame).__name__}")
    got = frame.attrs.get("feature_set_version")
    if spec.feature_set_version is not None and got is None:
        raise ConfigError("the features callable's table states no feature-set version "
                          "(frame.attrs['feature_set_version'], as features.api."
                          "extract_features sets it); the model was trained on version "
                          f"{spec.feature_set_version!r}")
    F = check_feature_table({"feature_set_version": got if spec.feature_set_version else None},
                            frame, {"feature_names": spec.feature_names,
                                    "feature_set_version": spec.feature_set_version},
                            source, "the model")
    ids = frame["object_id"].astype(str).str.strip().to_numpy()
    if pd.Index(ids).has_duplicates:
        raise InputError(source, "the features callable returned two rows for one copy",
                         object_id=pd.Index(ids)[pd.Index(ids).duplicated()][0])
    rows = _rows_of(ids, np.arange(n).astype(str), source)  # copy order, whatever theirs
    return F.to_numpy(dtype=np.float64, na_value=np.nan)[rows]


def _margin(P: np.ndarray, c: int) -> np.ndarray:
    """``p_c - max_{j != c} p_j`` per row of ``P``."""
    others = np.delete(P, c, axis=1)
    return P[:, c] - (others.max(axis=1) if others.shape[1] else 0.0)


# --------------------------------------------------------------------------- search


def flip_search(
    model: Any,
    lcs: LightCurves,
    *,
    eps: Sequence[float] = DEFAULT_EPS,
    tries: int = 32,
    rounds: int = 2,
    max_points: int = 8,
    seed: int = 0,
    batch_images: int = 4096,
    features: FeatureFn | None = None,
) -> FlipSearch:
    """Search, per object, the smallest magnitude change [sigma] that flips the class.

    See the module docstring for the search and what it does (not) guarantee.

    Parameters
    ----------
    model : models.cnn.DmDtCNN, models.hybrid.HybridCNN or similar
        A fitted classifier of network inputs with ``predict_proba``, ``classes_`` and
        ``input_meta_`` naming the representation (``'preset'``) and ``'bands'``, and
        for a hybrid network its ``'feature_names'`` (and ``'feature_set_version'``).
    lcs : LightCurves
        Clean light curves (every ``mag_err`` finite and > 0 [mag]).
    eps : sequence of float, default :data:`DEFAULT_EPS`
        Strictly increasing perturbation sizes [units of each point's error bar].
    tries : int, default=32
        Candidate sign patterns per object, ``eps`` and round.
    rounds : int, default=2
        Rounds per ``eps``; each starts from the best pattern of the one before.
    max_points : int, default=8
        Most points a sparse pattern moves.
    seed : int, default=0
        Seed; object ``i`` (order of first appearance) uses ``default_rng([seed, i])``.
    batch_images : int, default=4096
        About how many candidate copies are made and classified at once (memory bound:
        ~9 kB per image of the ``fine`` representation); with features, the copies of
        one call of ``features``.
    features : callable, optional
        Required for a model with ``input_meta_['feature_names']`` (a hybrid network),
        refused for an image-only one. Called as ``features(copies)`` on the candidate
        copies of a batch (a :class:`LightCurves` whose object ids are the copy indices
        0, 1, ...), it returns their feature table (``object_id`` and the model's
        feature columns; ``attrs['feature_set_version']`` when the model names one):
        e.g. :func:`classify_features`. Rows are matched to the copies by ``object_id``,
        in any order; NaN features are left to the model (the hybrid imputes them).

    Returns
    -------
    FlipSearch
        The per-object table, the flipping sign of every point, and the grid.

    Raises
    ------
    ConfigError
        Bad grid or counts, a model whose inputs cannot be made from light curves, a
        hybrid network without ``features`` or an image-only one with it.
    InputError
        Error bars not finite and > 0, no light curve in the model's bands, or a
        feature table without a row for a copy, without the model's feature columns or
        of another feature-set version.
    """
    grid = _check_eps(eps)
    tries = _check_int("tries", tries)
    rounds = _check_int("rounds", rounds)
    max_points = _check_int("max_points", max_points)
    batch_images = _check_int("batch_images", batch_images)
    seed = _check_int("seed", seed, minimum=0)
    spec = _model_inputs(model, features)
    bands = spec.bands
    err = np.asarray(lcs.mag_err, dtype=np.float64)
    if not np.all(np.isfinite(err) & (err > 0)):
        raise InputError("<light curves>", "every mag_err must be finite and > 0: flip sizes "
                         "are in units of the error bars")
    if len(lcs) and not np.isin(lcs.band.astype(str), bands).any():
        raise InputError("<light curves>", f"no light curve in the model's bands {bands} "
                         f"(bands given: {sorted(set(lcs.band.astype(str)))})")
    ids, _, first = _objects(lcs)
    n_obj = len(ids)
    classes = np.asarray(model.classes_).astype(str)
    pred = np.zeros(n_obj, dtype=np.int64)
    prob = np.zeros(n_obj)
    margin = np.zeros(n_obj)
    flip = np.full(n_obj, np.nan)
    flip_to = np.full(n_obj, -1, dtype=np.int64)
    flip_prob = np.full(n_obj, np.nan)
    moved = np.zeros(n_obj, dtype=np.int64)
    tried = np.zeros(n_obj, dtype=np.int64)
    signs = np.zeros(len(lcs.mag), dtype=np.int8)

    per_batch = max(1, batch_images // tries)
    for a in range(0, n_obj, per_batch):
        objs = range(a, min(a + per_batch, n_obj))
        clean = _Batch(lcs, first)
        for o in objs:
            clean.add(o, np.zeros((1, len(clean.rows(o)))))
        P = np.asarray(model.predict_proba(clean.inputs(spec)), dtype=np.float64)
        for i, o in enumerate(objs):
            pred[o] = int(np.argmax(P[i]))
            prob[o] = P[i, pred[o]]
            margin[o] = _margin(P[i:i + 1], pred[o])[0]
        rngs = {o: np.random.default_rng([seed, o]) for o in objs}
        incumbent: dict[int, np.ndarray | None] = {o: None for o in objs}
        active = list(objs)
        for e in grid:
            best = {o: np.inf for o in active}
            for _ in range(rounds):
                if not active:
                    break
                batch = _Batch(lcs, first)
                cands = {}
                for o in active:
                    rows = batch.rows(o)
                    cands[o] = _candidates(rngs[o], len(rows), tries, incumbent[o], max_points)
                    batch.add(o, e * err[rows][None, :] * cands[o])
                P = np.asarray(model.predict_proba(batch.inputs(spec)), dtype=np.float64)
                still = []
                for i, o in enumerate(active):
                    Po = P[i * tries:(i + 1) * tries]
                    m = _margin(Po, pred[o])
                    tried[o] += tries
                    top = np.argmax(Po, axis=1)
                    flipped = np.flatnonzero(top != pred[o])
                    if len(flipped):
                        j = flipped[np.argmin(m[flipped])]
                        flip[o], flip_to[o] = e, top[j]
                        flip_prob[o] = Po[j, top[j]]
                        moved[o] = int(np.count_nonzero(cands[o][j]))
                        signs[batch.rows(o)] = cands[o][j]
                        continue
                    j = int(np.argmin(m))
                    if m[j] < best[o]:
                        best[o], incumbent[o] = m[j], cands[o][j].copy()
                    still.append(o)
                active = still
            if not active:
                break

    table = pd.DataFrame({
        "object_id": pd.Series(ids.astype(str), dtype=object),
        "predicted_class": classes[pred] if n_obj else np.zeros(0, dtype=object),
        "probability": prob,
        "margin": margin,
        "flip_sigma": flip,
        "flipped_to": pd.Series([classes[k] if k >= 0 else None for k in flip_to],
                                dtype=object),
        "flip_probability": flip_prob,
        "points_moved": moved,
        "within_1_sigma": flip <= 1.0,
        "candidates_tried": tried,
    }, columns=list(COLUMNS))
    return FlipSearch(table=table, signs=signs, eps=grid)


def flip_sizes(model: Any, lcs: LightCurves, **kw: Any) -> pd.DataFrame:
    """Per-object minimum flip size found by :func:`flip_search` (same keywords).

    Returns
    -------
    pandas.DataFrame
        One row per object (order of first appearance in ``lcs``):

        ``object_id``; ``predicted_class`` and its ``probability`` on the light curve
        as measured; ``margin`` (that probability minus the next largest);
        ``flip_sigma`` (smallest grid ``eps`` [sigma] at which a candidate changed the
        class, NaN if none did); ``flipped_to`` (the class then, None if no flip) and
        ``flip_probability`` (its probability); ``points_moved`` (points the flipping
        pattern moves, 0 if none); ``within_1_sigma`` (``flip_sigma <= 1``);
        ``candidates_tried`` (candidate copies classified for the object).
    """
    return flip_search(model, lcs, **kw).table


def median_flip_size(flip_sigma: Any) -> float:
    """Median flip size [sigma], objects that never flipped counted as +inf.

    Those objects need more than the largest ``eps`` searched (as far as the search
    can tell), so they sort above every flip; the median is ``inf`` when more than half
    of them never flipped, NaN for no objects.
    """
    v = np.asarray(flip_sigma, dtype=np.float64)
    if v.size == 0:
        return float("nan")
    return float(np.median(np.where(np.isnan(v), np.inf, v)))


def flip_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per predicted class (and ``'__overall__'``): how easily the answers flip.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`flip_sizes` output.

    Returns
    -------
    pandas.DataFrame
        Columns ``predicted_class``, ``objects``, ``median_flip_sigma`` [sigma]
        (:func:`median_flip_size`: ``inf`` when most never flipped),
        ``within_1_sigma`` (fraction flipping at <= 1 sigma) and ``never_flipped``
        (fraction with no flip up to the largest ``eps``); classes sorted, then
        :data:`pipeline.reports.OVERALL` (every object).
    """
    rows = []
    groups = [(str(c), g) for c, g in table.groupby("predicted_class", sort=True)]
    for name, g in [*groups, (OVERALL, table)]:
        rows.append({"predicted_class": name, "objects": int(len(g)),
                     "median_flip_sigma": median_flip_size(g["flip_sigma"]),
                     "within_1_sigma": float(g["within_1_sigma"].mean()) if len(g) else np.nan,
                     "never_flipped": float(g["flip_sigma"].isna().mean()) if len(g)
                     else np.nan})
    return pd.DataFrame(rows, columns=["predicted_class", "objects", "median_flip_sigma",
                                       "within_1_sigma", "never_flipped"])


def _split_objects(lcs: LightCurves, parts: int) -> list[LightCurves]:
    """``lcs`` cut into up to ``parts`` pieces of about equally many objects (whole objects)."""
    _, _, first = _objects(lcs)
    cuts = np.unique(np.linspace(0, len(first) - 1, parts + 1).round().astype(np.int64))
    out = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        s0, s1 = first[a], first[b]
        r0, r1 = lcs.offsets[s0], lcs.offsets[s1]
        out.append(LightCurves(object_id=lcs.object_id[s0:s1], band=lcs.band[s0:s1],
                               offsets=lcs.offsets[s0:s1 + 1] - r0, t=lcs.t[r0:r1],
                               mag=lcs.mag[r0:r1], mag_err=lcs.mag_err[r0:r1]))
    return out


def _classify_features(lcs: LightCurves, bands: list[str], n_jobs: int) -> pd.DataFrame:
    """:func:`features.api.extract_features` of ``lcs``, in ``n_jobs`` processes if > 1."""
    from features.api import extract_features

    n_obj = len(_objects(lcs)[0])
    if n_jobs == 1 or n_obj < 2:
        return extract_features(lcs, bands=bands)
    from features.api import _process_pool

    pieces = _split_objects(lcs, min(2 * n_jobs, n_obj))
    frames = list(_process_pool(n_jobs).map(partial(extract_features, bands=bands), pieces))
    frame = pd.concat(frames, ignore_index=True)
    frame.attrs = {k: v for k, v in frames[0].attrs.items() if k != "summary"}
    return frame


def classify_features(bands: Sequence[str], n_jobs: int = 1) -> FeatureFn:
    """The features callable of :func:`flip_search` that computes them as classify does.

    ``lcpipe classify`` computes a bundle's features with
    :func:`features.api.extract_features_file` over the chunk's clean light curves, with
    ``bands=bundle.info['bands']`` and the default period search; this is
    :func:`features.api.extract_features` with the same bands and settings on the
    in-memory candidates (no re-cleaning: a changed magnitude cannot trip a cleaning rule).

    Parameters
    ----------
    bands : sequence of str
        The bundle's bands, in order (``bundle.info['bands']``).
    n_jobs : int, default=1
        Processes: with more than one, each batch of candidates is cut into ``2 * n_jobs``
        pieces of whole objects computed in lcpipe's shared worker pool (started once, with
        ``spawn``: a script needs the ``if __name__ == "__main__":`` guard); ``-1``: all
        CPUs. The table is the same whatever ``n_jobs``.
    """
    return partial(_classify_features, bands=[str(b) for b in bands], n_jobs=_n_jobs(n_jobs))


def _n_jobs(n_jobs: Any) -> int:
    if isinstance(n_jobs, int | np.integer) and not isinstance(n_jobs, bool) and n_jobs == -1:
        return os.cpu_count() or 1
    return _check_int("n_jobs", n_jobs)


#: Networks of a bundle that :func:`adversarial_check` searches.
_NETWORKS = {"cnn": "CNN", "hybrid": "hybrid network"}


def adversarial_check(bundle_spec: str | os.PathLike[str], lcs: LightCurves,
                      model: str = "cnn", n_jobs: int = 1, **kw: Any) -> pd.DataFrame:
    """:func:`flip_sizes` of a bundle's CNN or hybrid network on clean light curves.

    Parameters
    ----------
    bundle_spec : path-like or str
        A bundle folder, a run folder of ``lcpipe train`` or a shipped name (``'crts'``).
    lcs : LightCurves
        Clean light curves.
    model : {'cnn', 'hybrid'}, default='cnn'
        The network searched. The hybrid's features are recomputed for every candidate
        as classify computes them (:func:`classify_features` with the bundle's bands):
        ~100 times the cost of the CNN search (see the module docstring).
    n_jobs : int, default=1
        Processes for the hybrid's features (``-1``: all CPUs); the CNN search runs in
        this process whatever ``n_jobs``.
    **kw
        Keywords of :func:`flip_search` (``eps``, ``tries``, ``rounds``, ...), but not
        ``features``.

    Raises
    ------
    ConfigError
        ``model`` not a network name, ``features`` given, or bad ``n_jobs``.
    InputError
        Not a bundle, or a bundle without that network.
    """
    from .bundle import load_bundle
    from .training import load_model_cached

    if model not in _NETWORKS:
        raise ConfigError(f"model must be one of {sorted(_NETWORKS)} (the networks the "
                          f"search runs on), got {model!r}")
    if "features" in kw:
        raise ConfigError("adversarial_check computes the hybrid's features as classify "
                          "does; to pass your own, call flip_search(model, lcs, features=...)")
    n_jobs = _n_jobs(n_jobs)
    b = load_bundle(bundle_spec)
    if model not in b.models:
        raise InputError(b.path, f"the bundle has no {_NETWORKS[model]} to check (its models: "
                         f"{', '.join(b.models)})")
    net, _ = load_model_cached(model, b.model_path(model))
    if model == "hybrid":
        return flip_sizes(net, lcs, features=classify_features(b.info["bands"], n_jobs), **kw)
    return flip_sizes(net, lcs, **kw)
