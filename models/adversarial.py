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

What it does not say: that no smaller change flips the answer (it is a random and greedy
search on a grid, not a certificate), anything about changes to the times, the cadence or
the error bars themselves (only magnitudes move), or anything about other models of a bundle
(only the CNN's images are searched). Candidates are seeded per object
(``numpy.random.default_rng([seed, object index])``), so the result depends neither on the
batch size nor on the other objects.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError, InputError
from pipeline.lightcurves import LightCurves

from .representations import Representation, get_representation, images_to_inputs

__all__ = [
    "COLUMNS",
    "DEFAULT_EPS",
    "FlipSearch",
    "adversarial_check",
    "flip_search",
    "flip_sizes",
    "flip_summary",
    "median_flip_size",
]

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


def _model_inputs(model: Any) -> tuple[Representation, list[str]]:
    """The representation and bands a fitted model's inputs are made with."""
    if not hasattr(model, "predict_proba") or not hasattr(model, "classes_"):
        raise ConfigError("the model must be a fitted classifier of network inputs "
                          "(predict_proba, classes_), e.g. a fitted models.cnn.DmDtCNN")
    meta = getattr(model, "input_meta_", None) or {}
    if meta.get("feature_names"):
        raise ConfigError("the model also takes light-curve features (a hybrid network); the "
                          "search recomputes dm-dt images only, not features")
    preset, bands = meta.get("preset"), meta.get("bands")
    if preset is None or not bands:
        raise ConfigError("the model's input_meta_ names no representation ('preset') or "
                          "no bands: cannot make its inputs from light curves")
    return get_representation(preset), [str(b) for b in bands]


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

    def inputs(self, rep: Representation, bands: list[str]) -> np.ndarray:
        """Network inputs of every copy, in the order added (float32)."""
        from pipeline.dmdt import compute_dmdt

        per_copy = np.repeat(np.asarray(self.series_per_copy, dtype=np.int64),
                             np.asarray(self.n_copies, dtype=np.int64))
        copy_id = np.repeat(np.arange(len(per_copy), dtype=np.int64), per_copy)
        lengths = np.concatenate([p[1] for p in self.parts])
        batch = LightCurves(object_id=copy_id, band=np.concatenate([p[0] for p in self.parts]),
                            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                            t=np.concatenate([p[2] for p in self.parts]),
                            mag=np.concatenate([p[3] for p in self.parts]),
                            mag_err=np.concatenate([p[4] for p in self.parts]))
        X, _ = images_to_inputs(compute_dmdt(batch, rep.bins, norm="counts", bands=bands), rep)
        return X


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
) -> FlipSearch:
    """Search, per object, the smallest magnitude change [sigma] that flips the class.

    See the module docstring for the search and what it does (not) guarantee.

    Parameters
    ----------
    model : models.cnn.DmDtCNN or similar
        A fitted classifier of network inputs with ``predict_proba``, ``classes_`` and
        ``input_meta_`` naming the representation (``'preset'``) and ``'bands'``.
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
        About how many candidate images are made and classified at once (memory bound:
        ~9 kB per image of the ``fine`` representation).

    Returns
    -------
    FlipSearch
        The per-object table, the flipping sign of every point, and the grid.

    Raises
    ------
    ConfigError
        Bad grid or counts, or a model whose inputs cannot be made from light curves.
    InputError
        Error bars not finite and > 0, or no light curve in the model's bands.
    """
    grid = _check_eps(eps)
    tries = _check_int("tries", tries)
    rounds = _check_int("rounds", rounds)
    max_points = _check_int("max_points", max_points)
    batch_images = _check_int("batch_images", batch_images)
    seed = _check_int("seed", seed, minimum=0)
    rep, bands = _model_inputs(model)
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
        P = np.asarray(model.predict_proba(clean.inputs(rep, bands)), dtype=np.float64)
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
                P = np.asarray(model.predict_proba(batch.inputs(rep, bands)), dtype=np.float64)
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
        ``candidates_tried`` (images classified for the object).
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
    """Per predicted class (and ``'all'``): how easily the answers flip.

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
        (fraction with no flip up to the largest ``eps``); classes sorted, ``'all'`` last.
    """
    rows = []
    groups = [(str(c), g) for c, g in table.groupby("predicted_class", sort=True)]
    for name, g in [*groups, ("all", table)]:
        rows.append({"predicted_class": name, "objects": int(len(g)),
                     "median_flip_sigma": median_flip_size(g["flip_sigma"]),
                     "within_1_sigma": float(g["within_1_sigma"].mean()) if len(g) else np.nan,
                     "never_flipped": float(g["flip_sigma"].isna().mean()) if len(g)
                     else np.nan})
    return pd.DataFrame(rows, columns=["predicted_class", "objects", "median_flip_sigma",
                                       "within_1_sigma", "never_flipped"])


def adversarial_check(bundle_spec: str | os.PathLike[str], lcs: LightCurves,
                      **kw: Any) -> pd.DataFrame:
    """:func:`flip_sizes` of a bundle's CNN on clean light curves.

    Parameters
    ----------
    bundle_spec : path-like or str
        A bundle folder, a run folder of ``lcpipe train`` or a shipped name (``'crts'``).
    lcs : LightCurves
        Clean light curves.
    **kw
        Keywords of :func:`flip_search` (``eps``, ``tries``, ``rounds``, ...).

    Raises
    ------
    InputError
        Not a bundle, or a bundle without a CNN.
    """
    from .bundle import load_bundle
    from .training import load_model_cached

    b = load_bundle(bundle_spec)
    if "cnn" not in b.models:
        raise InputError(b.path, "the bundle has no CNN to check")
    model, _ = load_model_cached("cnn", b.model_path("cnn"))
    return flip_sizes(model, lcs, **kw)
