"""Activation maximisation of a CNN's classes, compared with the robust-PCA class templates.

:func:`activation_maximisation` looks, for each class, for the dm-dt image that maximises
the network's pre-softmax score of that class (Erhan et al. 2009; Simonyan et al. 2014),
by projected gradient ascent under an L2 penalty, each iterate projected onto what real
network inputs look like:

* every channel non-negative and inside the per-channel range of the reference images
  (e.g. the training images);
* for the ``fine`` representation (:mod:`models.representations`) the two channels of a
  band are one image of non-negative (real-valued) pair counts ``c``: the free variable is
  the ``log_count`` channel ``log10(1 + c) / 5`` and the ``p_dm_given_dt`` channel is
  computed from it, ``c / (column sum of c)``, so every dt column of it sums to exactly 1,
  or is all 0 where the column holds no pairs;
* for the ``paper`` representation the pixels stay within 0-255 (the range of the
  reference images), but are not rounded to integers.

:func:`template_correlation` turns each maximising image into pair counts (the ``log_count``
channel inverted, or the ``paper`` pixels, which are proportional to counts), moves it onto
the robust-PCA grid with :func:`rebin_image`, applies the robust PCA's pixel transform and
correlates it (Pearson) with every class template ``b + c_i`` of
:class:`pipeline.rpca_dmdt.DmDtRPCA`.

The train flow's reports hold both (:mod:`models.interpret`: tables ``class_maps`` and
``activation_check``). Keras is imported only when a network is used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import ConfigError

from .representations import LOG_COUNT_SCALE

__all__ = [
    "activation_maximisation",
    "class_scores",
    "count_image",
    "rebin_image",
    "rebin_matrix",
    "template_correlation",
]


# --------------------------------------------------------------------------- scores


def _score_model(est: Any) -> Any:
    """Keras model from the input of ``est.model_`` to its pre-softmax layer ``logits``."""
    from .cnn import _keras

    keras = _keras()
    return keras.Model(est.model_.inputs, est.model_.get_layer("logits").output)


def class_scores(est: Any, X: Any) -> np.ndarray:
    """Pre-softmax class scores (layer ``logits``) of images.

    Parameters
    ----------
    est : models.cnn.DmDtCNN
        Fitted network.
    X : array-like of shape (n_images, n_dm, n_dt[, n_channels])
        Network inputs.

    Returns
    -------
    ndarray of float64, shape (n_images, n_classes)
        Scores, columns in ``est.classes_`` order.
    """
    X = est._check_predict_X(X)
    out = _score_model(est).predict(X, batch_size=int(est.inference_batch_size), verbose=0)
    return np.asarray(out, dtype=np.float64)


# --------------------------------------------------------------------------- activation max.


def _channel_pairs(meta: dict[str, Any], n_channels: int) -> list[tuple[int, int]]:
    """(p_dm_given_dt, log_count) channel indices of each band that has both (by name)."""
    names = [str(c) for c in (meta.get("channels") or [])]
    if len(names) != n_channels:
        return []
    index = {name: i for i, name in enumerate(names)}
    pairs = []
    for name, i in index.items():
        band, _, kind = name.rpartition(":")
        partner = f"{band}:log_count" if band else "log_count"
        if kind == "p_dm_given_dt" and partner in index:
            pairs.append((i, index[partner]))
    return pairs


class _Projection:
    """Map between the free variable ``u`` (inputs / per-channel scale) and network inputs."""

    def __init__(self, X_ref: np.ndarray, meta: dict[str, Any]) -> None:
        n_ch = X_ref.shape[-1]
        lo = np.maximum(X_ref.min(axis=(0, 1, 2)), 0.0).astype(np.float64)
        hi = np.maximum(X_ref.max(axis=(0, 1, 2)), lo).astype(np.float64)
        self.scale = np.where(hi > 0, hi, 1.0)
        self.pairs = _channel_pairs(meta, n_ch)
        self.derived = np.zeros(n_ch, dtype=bool)
        for p, _ in self.pairs:
            self.derived[p] = True
        self.u_lo = np.where(self.derived, 0.0, lo / self.scale)
        self.u_hi = np.where(self.derived, 0.0, hi / self.scale)

    def project(self, u: np.ndarray) -> np.ndarray:
        """Clip every free channel to its range; derived channels are held at 0 in ``u``."""
        return np.clip(u, self.u_lo, self.u_hi)

    def counts(self, x_log: np.ndarray) -> np.ndarray:
        """Pair counts of a ``log_count`` channel (inverse of ``log10(1 + c) / 5``)."""
        return np.power(10.0, LOG_COUNT_SCALE * x_log) - 1.0

    def to_input(self, u: np.ndarray) -> np.ndarray:
        """Network input of ``u`` (projected): free channels scaled, p(dm|dt) from the counts."""
        x = u * self.scale
        for p, lc in self.pairs:
            c = self.counts(x[..., lc])
            col = c.sum(axis=1, keepdims=True)
            x[..., p] = np.where(col > 0, c / np.where(col > 0, col, 1.0), 0.0)
        return x

    def score_gradient(self, g: np.ndarray, x: np.ndarray) -> np.ndarray:
        """d score / d u from d score / d x (chain rule through the derived channels).

        For a (p, log_count) pair with counts c = 10^(5 l) - 1 and column sums C:
        dp[i, j] / dc[k, j] = (delta_ik - p[i, j]) / C_j and dc / dl = 5 ln(10) (1 + c);
        C is taken as at least 1 in the derivative (a column of fewer than one pair),
        as :func:`models.representations.p_dm_given_dt` divides integer counts.
        """
        gu = g.astype(np.float64).copy()
        for p, lc in self.pairs:
            c = self.counts(x[..., lc])
            col = np.maximum(c.sum(axis=1, keepdims=True), 1.0)
            gp = g[..., p]
            d_dc = (gp - (gp * x[..., p]).sum(axis=1, keepdims=True)) / col
            gu[..., lc] += d_dc * LOG_COUNT_SCALE * np.log(10.0) * (1.0 + c)
            gu[..., p] = 0.0
        return gu * self.scale


def activation_maximisation(
    est: Any,
    X_ref: Any,
    classes: Sequence[Any] | None = None,
    *,
    steps: int = 200,
    learning_rate: float = 0.05,
    l2: float = 0.1,
    start: str = "mean",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The input that maximises each class score, normalised like real inputs.

    Maximises ``S_k(x(u)) - l2 / 2 * sum(u**2)`` with Adam (``keras.optimizers.Adam``),
    where ``S_k`` is the pre-softmax score of class ``k`` (layer ``logits``; gradients from
    :func:`models.cnn._input_gradient`, one pass for all classes) and ``u`` is the image
    divided by each channel's maximum over ``X_ref`` (so ``learning_rate`` and ``l2`` do
    not depend on the representation's units). After every step ``u`` is projected: each
    channel clipped to ``[max(0, min), max]`` of that channel in ``X_ref``; for ``fine`` inputs
    the ``p_dm_given_dt`` channel is recomputed from the ``log_count`` one (module
    docstring), so its dt columns sum to 1 or 0 exactly.

    Parameters
    ----------
    est : models.cnn.DmDtCNN
        Fitted network; its ``input_meta_['channels']`` tells the channels apart.
    X_ref : array-like of shape (n_images, n_dm, n_dt[, n_channels])
        Real network inputs (e.g. the training images): the per-channel ranges, and the
        starting image for ``start='mean'``.
    classes : sequence, optional
        Class labels to maximise (default all of ``est.classes_``), output in this order.
    steps : int, default=200
        Adam steps.
    learning_rate : float, default=0.05
        Adam learning rate, in units of each channel's maximum over ``X_ref``.
    l2 : float, default=0.1
        Weight of the L2 penalty, in score units per squared normalised pixel: it pulls
        pixels that raise the score little to 0 (no pairs). With the box constraints the
        ascent is bounded without it (``l2=0``).
    start : {'mean', 'noise'}, default='mean'
        Start from the mean image of ``X_ref``, or from uniform noise inside the ranges.
    seed : int, default=0
        Seed of the noise start (the ascent itself is deterministic).

    Returns
    -------
    images : ndarray of float32, shape (n_classes, n_dm, n_dt, n_channels)
        The maximising image of each class, in network-input units.
    scores : ndarray of float64, shape (n_classes,)
        Its class score (pre-softmax, without the penalty). Compare with
        :func:`class_scores` of real images.

    Raises
    ------
    ConfigError
        Bad settings.
    ValueError
        Unknown class.
    pipeline.errors.InputError
        Reference images of another shape than the network's input.
    """
    from .cnn import _input_gradient, _keras

    if int(steps) < 0 or not float(learning_rate) > 0 or not float(l2) >= 0:
        raise ConfigError("activation maximisation needs steps >= 0, learning_rate > 0 and "
                          "l2 >= 0")
    if start not in ("mean", "noise"):
        raise ConfigError(f"start must be 'mean' or 'noise', not {start!r}")
    X_ref = est._check_predict_X(X_ref)
    labels = list(est.classes_) if classes is None else list(classes)
    known = {str(c): i for i, c in enumerate(est.classes_)}
    unknown = [c for c in labels if str(c) not in known]
    if unknown:
        raise ValueError(f"unknown class {str(unknown[0])!r}")
    t_idx = np.asarray([known[str(c)] for c in labels], dtype=np.int64)
    proj = _Projection(X_ref, getattr(est, "input_meta_", {}) or {})
    shape = (len(labels), *X_ref.shape[1:])
    if start == "mean":
        u = np.broadcast_to(X_ref.mean(axis=0, dtype=np.float64) / proj.scale, shape).copy()
    else:
        u = np.random.default_rng(seed).uniform(proj.u_lo, proj.u_hi, size=shape)
    u = proj.project(u)

    keras = _keras()
    score_model = _score_model(est)
    var = keras.Variable(u.astype(np.float32), name="activation_maximisation")
    opt = keras.optimizers.Adam(learning_rate=float(learning_rate))
    for _ in range(int(steps)):
        x = proj.to_input(u)
        g = _input_gradient(score_model, x.astype(np.float32), t_idx)
        ascent = proj.score_gradient(g, x) - float(l2) * u
        opt.apply_gradients([(keras.ops.convert_to_tensor(-ascent.astype(np.float32)), var)])
        u = proj.project(np.asarray(var.numpy(), dtype=np.float64))
        var.assign(u.astype(np.float32))
    images = proj.to_input(u).astype(np.float32)
    scores = class_scores(est, images)[np.arange(len(labels)), t_idx]
    return images, scores


# --------------------------------------------------------------------------- rebinning


def _axis_coords(edges: np.ndarray, log: bool, source: bool) -> np.ndarray:
    """Bin edges as coordinates of the overlap measure (dm: mag; dt: log10 days)."""
    if not log:
        return edges
    if np.any(edges < 0):
        raise ValueError("dt edges must be >= 0 days")
    out = np.full(len(edges), -np.inf)
    pos = edges > 0
    out[pos] = np.log10(edges[pos])
    if source and edges[0] == 0:
        # a source bin reaching down to dt = 0 gets the log width of its neighbour
        if len(edges) < 3:
            raise ValueError("a dt grid starting at 0 needs at least two bins to be rebinned")
        out[0] = 2 * out[1] - out[2]
    return out


def rebin_matrix(edges: Any, to_edges: Any, log: bool = False) -> np.ndarray:
    """Fraction of each source bin that falls in each target bin, along one axis.

    Parameters
    ----------
    edges, to_edges : array-like of float
        Increasing source and target bin edges (dm in mag, or dt in days).
    log : bool, default=False
        Measure the overlap in log10 of the coordinate (dt). A target edge of 0 is
        ``-inf`` there (the target bin reaches down to dt -> 0); a source grid whose first
        edge is 0 has its first bin given the log width of the second bin.

    Returns
    -------
    ndarray of shape (n_source_bins, n_target_bins)
        ``W[i, j] = |src_i ∩ tgt_j| / |src_i|``. A row sums to 1 for a source bin inside
        the target grid's range, less for one partly or wholly outside (that part is
        dropped).
    """
    src = np.asarray(edges, dtype=np.float64)
    tgt = np.asarray(to_edges, dtype=np.float64)
    for e in (src, tgt):
        if e.ndim != 1 or len(e) < 2 or not np.all(np.diff(e) > 0):
            raise ValueError("bin edges must be increasing, with at least one bin")
    a = _axis_coords(src, log, source=True)
    b = _axis_coords(tgt, log, source=False)
    overlap = np.clip(np.minimum.outer(a[1:], b[1:]) - np.maximum.outer(a[:-1], b[:-1]),
                      0.0, None)
    return overlap / np.diff(a)[:, None]


def rebin_image(image: Any, dm_edges: Any, dt_edges: Any, to_dm_edges: Any,
                to_dt_edges: Any) -> np.ndarray:
    """Resample a dm-dt image onto another grid by the overlap of bins in (dm, log10 dt).

    Each source cell's value is shared among the target cells in proportion to the area
    of their overlap in (dm [mag], log10 dt [days]) (:func:`rebin_matrix` per axis). Sums
    are conserved for source cells fully inside the target grid: a target cell that is a
    union of source cells gets exactly their sum. What falls outside the target grid is
    dropped. Meant for additive pixels (pair counts, or pixels proportional to them).

    Parameters
    ----------
    image : array-like of shape (n_dm, n_dt) or (n_dm, n_dt, n_channels)
        Image on the source grid.
    dm_edges, dt_edges : array-like of float
        Source edges [mag], [days].
    to_dm_edges, to_dt_edges : array-like of float
        Target edges [mag], [days].

    Returns
    -------
    ndarray of float64, shape (n_dm', n_dt'[, n_channels])
    """
    img = np.asarray(image, dtype=np.float64)
    w_dm = rebin_matrix(dm_edges, to_dm_edges)
    w_dt = rebin_matrix(dt_edges, to_dt_edges, log=True)
    if img.shape[:2] != (w_dm.shape[0], w_dt.shape[0]):
        raise ValueError(f"image of shape {img.shape} is not on a {w_dm.shape[0]} x "
                         f"{w_dt.shape[0]} grid")
    if img.ndim == 2:
        return w_dm.T @ img @ w_dt
    return np.einsum("ia,ijc,jb->abc", w_dm, img, w_dt)


# --------------------------------------------------------------------------- templates


def count_image(images: Any, meta: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    """Per band, an image proportional to pair counts, from network inputs.

    ``<band>:log_count`` channels are inverted (``10**(5 x) - 1``); otherwise the first
    channel of each band is taken as is (``paper`` pixels are ``ceil(255 c / n_pairs)``,
    i.e. proportional to counts). Unnamed channels (no ``meta['channels']``) are one band
    each.

    Parameters
    ----------
    images : array-like of shape (n, n_dm, n_dt, n_channels)
    meta : dict
        Input description (``models.cnn.DmDtCNN.input_meta_``).

    Returns
    -------
    counts : ndarray of float64, shape (n, n_dm, n_dt, n_bands)
    bands : list of str
    """
    x = np.asarray(images, dtype=np.float64)
    names = [str(c) for c in (meta.get("channels") or [])]
    if len(names) != x.shape[-1]:
        names = [str(i) for i in range(x.shape[-1])]
    bands: dict[str, int] = {}
    for i, name in enumerate(names):
        band, _, kind = name.rpartition(":")
        band = band or name
        if kind == "log_count":
            bands[band] = i  # preferred over the band's other channels
        else:
            bands.setdefault(band, i)
    cols = []
    for i in bands.values():
        kind = names[i].rpartition(":")[2]
        cols.append(np.power(10.0, LOG_COUNT_SCALE * x[..., i]) - 1.0 if kind == "log_count"
                    else x[..., i])
    return np.stack(cols, axis=-1), list(bands)


def template_correlation(
    am_images: Any,
    am_meta: dict[str, Any],
    rpca_model: Any,
    rpca_image_meta: dict[str, Any],
    *,
    classes: Sequence[Any],
) -> pd.DataFrame:
    """Pearson correlation of each class's maximising image with the robust-PCA templates.

    Each image is turned into pair counts per band (:func:`count_image`), rebinned onto the
    robust PCA's grid (:func:`rebin_image`), put through its pixel transform (``sqrt`` or
    none) and flattened like ``rpca_model.class_templates_`` (dm, dt, band); bands are
    matched by name (one band each: matched whatever the names).

    Parameters
    ----------
    am_images : array-like of shape (n_classes, n_dm, n_dt, n_channels)
        From :func:`activation_maximisation`.
    am_meta : dict
        The network's input description (``dm_edges`` [mag], ``dt_edges`` [days],
        ``channels``).
    rpca_model : pipeline.rpca_dmdt.DmDtRPCA
        Fitted model (``class_templates_``, ``classes_``, ``image_shape_``,
        ``pixel_transform``).
    rpca_image_meta : dict
        Its images' ``dm_edges``, ``dt_edges`` and ``bands`` (``load_rpca(path)[1]
        ['image_meta']``).
    classes : sequence
        Class of each image.

    Returns
    -------
    pandas.DataFrame
        One row per image: ``class``, ``correlation_own`` (NaN for a class without a
        template), ``best_other_class`` and ``correlation_best_other`` (the best template
        of another class), ``rank_own`` (1: the own template correlates best; <NA> without
        one).
    """
    from pipeline.rpca_dmdt import _apply_transform

    counts, bands = count_image(am_images, am_meta)
    classes = [str(c) for c in classes]
    if len(classes) != len(counts):
        raise ValueError("need one class per image")
    n_dm, n_dt, n_b = (int(s) for s in rpca_model.image_shape_)
    rb = [str(b) for b in (rpca_image_meta.get("bands") or [])]
    if n_b == 1 and len(bands) == 1:
        pick = [0]
    elif len(rb) == n_b and set(rb) <= set(bands):
        pick = [bands.index(b) for b in rb]
    else:
        raise ValueError(f"cannot match the network's bands {bands} to the robust PCA's "
                         f"{rb or n_b}")
    rebinned = np.stack([rebin_image(counts[k][..., pick], am_meta["dm_edges"],
                                     am_meta["dt_edges"], rpca_image_meta["dm_edges"],
                                     rpca_image_meta["dt_edges"]) for k in range(len(counts))])
    if rebinned.shape[1:] != (n_dm, n_dt, n_b):
        raise ValueError(f"robust-PCA edges give {rebinned.shape[1:]} images, its templates "
                         f"are {(n_dm, n_dt, n_b)}")
    vecs = _apply_transform(np.clip(rebinned, 0.0, None).reshape(len(counts), -1),
                            rpca_model.pixel_transform)
    templates = np.asarray(rpca_model.class_templates_, dtype=np.float64)
    tcls = [str(c) for c in rpca_model.classes_]
    rows = []
    with np.errstate(invalid="ignore", divide="ignore"):
        for k, c in enumerate(classes):
            r = np.corrcoef(vecs[k], templates)[0, 1:]
            own = tcls.index(c) if c in tcls else None
            others = [j for j in range(len(tcls)) if j != own and np.isfinite(r[j])]
            best = max(others, key=lambda j: r[j]) if others else None
            rows.append({
                "class": c,
                "correlation_own": float(r[own]) if own is not None else np.nan,
                "best_other_class": tcls[best] if best is not None else None,
                "correlation_best_other": float(r[best]) if best is not None else np.nan,
                "rank_own": (int(1 + np.sum(r > r[own])) if own is not None
                             and np.isfinite(r[own]) else pd.NA),
            })
    out = pd.DataFrame(rows)
    out["rank_own"] = out["rank_own"].astype("Int64")
    return out
