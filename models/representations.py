"""Named dm-dt input representations for the CNN, and cadence augmentation.

A representation fixes the bin grid and the pixel normalisation of the
images a network sees; it is saved with the model and checked again at
prediction time. Two presets:

``paper``
    The faithful input of Mahabal et al. (2017, arXiv:1709.06257): the
    ``mahabal2017`` grid (22 dm x 24 dt) and their normalisation
    ``ceil(255 * count / (n(n-1)/2))``, fed to the network as is (values
    0-255, as the authors' uint8 images). One channel per band.
``fine``
    The ``lcpipe_fine`` grid (:data:`FINE_BINS`: 36 dm bins, finer near
    dm = 0, and 32 log-spaced dt bins of 0.2 dex from 3 minutes to 4000
    days) with two channels per band:

    * ``p_dm_given_dt``: each dt column divided by its number of pairs, so
      it is the distribution of dm at that time lag (columns without pairs
      are 0). This keeps the dm shape visible at every lag; the paper's
      scaling divides by all n(n-1)/2 pairs and leaves most pixels at
      0 or 1.
    * ``log_count``: ``log10(1 + count) / 5``, which says how many pairs
      each pixel holds (how far to trust the first channel).

Both presets are computed from raw pair counts (``norm='counts'`` of
:func:`pipeline.dmdt.compute_dmdt`), or from a dm-dt file written with the
preset's own normalisation.

Augmentation (:func:`subsample_lightcurves`, :func:`augmented_inputs`) makes
extra images of the same object from random subsets of its points, i.e. a
sparser cadence of the same star: the dm-dt image of a variable star does
not depend on how many times it was observed, only its noise does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.dmdt import BINS_PRESETS, DmDtBins, DmDtImages, compute_dmdt, get_bins
from pipeline.errors import ConfigError, InputError
from pipeline.lightcurves import LightCurves

from .evaluation import SampleCopies

__all__ = [
    "FINE_BINS",
    "REPRESENTATIONS",
    "Representation",
    "augmented_inputs",
    "get_representation",
    "images_to_inputs",
    "lightcurves_to_inputs",
    "log_count",
    "p_dm_given_dt",
    "paper_scaled",
    "subsample_lightcurves",
]

#: Finer grid (``pipeline.dmdt`` preset ``lcpipe_fine``): dm edges +-(0, 0.05, ..., 8) mag
#: (36 bins, 0.05 mag wide near 0); dt edges 33 values log-spaced from 1/480 d (3 min) to
#: 4000 d (0.2 dex per bin).
FINE_BINS = BINS_PRESETS["lcpipe_fine"]

#: Divisor of log10(1 + count) in the ``log_count`` channel (1e5 pairs -> 1).
LOG_COUNT_SCALE = 5.0


def paper_scaled(counts: np.ndarray, n_pairs: np.ndarray) -> np.ndarray:
    """Mahabal et al. (2017) pixels ``ceil(255 * count / (n(n-1)/2))``.

    Parameters
    ----------
    counts : ndarray of shape (N, n_dm, n_dt, n_bands)
        Pair counts.
    n_pairs : ndarray of shape (N, n_bands)
        All pairs n(n-1)/2 of each object and band (inside the grid or not).

    Returns
    -------
    ndarray of float32, same shape as ``counts``
        Integers in [0, 255]; 0 where a band has no pairs.
    """
    counts = np.asarray(counts, dtype=np.int64)
    npairs = np.asarray(n_pairs, dtype=np.int64)[:, None, None, :]
    # integer ceil(255 c / n): exact, like pipeline.dmdt's 'paper' norm
    up = np.where(npairs > 0, -((-255 * counts) // np.maximum(npairs, 1)), 0)
    return up.astype(np.float32)


def p_dm_given_dt(counts: np.ndarray) -> np.ndarray:
    """Per-dt-column distribution of dm: ``count / sum over dm of count``.

    Parameters
    ----------
    counts : ndarray of shape (N, n_dm, n_dt, n_bands)
        Pair counts.

    Returns
    -------
    ndarray of float32, same shape
        Each non-empty (object, dt column, band) sums to 1 over dm; empty columns are 0.
    """
    counts = np.asarray(counts, dtype=np.float64)
    col = counts.sum(axis=1, keepdims=True)
    return (counts / np.maximum(col, 1.0)).astype(np.float32)


def log_count(counts: np.ndarray) -> np.ndarray:
    """``log10(1 + count) / LOG_COUNT_SCALE`` (float32, same shape as ``counts``)."""
    return (np.log10(1.0 + np.asarray(counts, dtype=np.float64)) / LOG_COUNT_SCALE).astype(
        np.float32)


@dataclass(frozen=True)
class Representation:
    """A named CNN input: bin grid plus per-band channels.

    Parameters
    ----------
    name : str
        Preset name.
    bins : DmDtBins
        dm-dt grid (mag, days).
    channels : tuple of str
        Channel names per band, from ``{'paper', 'p_dm_given_dt', 'log_count'}``.
    file_norm : str
        The normalisation of a dm-dt file that carries exactly this input
        besides raw ``'counts'`` (``'paper'`` for the paper preset).
    description : str
        One line for help texts.
    """

    name: str
    bins: DmDtBins
    channels: tuple[str, ...]
    file_norm: str
    description: str

    @property
    def norm(self) -> str:
        """Normalisation label stored in model metadata, e.g. ``'p_dm_given_dt+log_count'``."""
        return "+".join(self.channels)

    def channel_names(self, bands: list[str]) -> list[str]:
        """``band:channel`` for every input channel, band-major."""
        return [f"{b}:{c}" for b in bands for c in self.channels]

    def from_counts(self, counts: np.ndarray, n_pairs: np.ndarray) -> np.ndarray:
        """Network input (N, n_dm, n_dt, n_bands * len(channels)) from pair counts."""
        parts = []
        for ch in self.channels:
            if ch == "paper":
                parts.append(paper_scaled(counts, n_pairs))
            elif ch == "p_dm_given_dt":
                parts.append(p_dm_given_dt(counts))
            elif ch == "log_count":
                parts.append(log_count(counts))
            else:  # pragma: no cover - presets are fixed below
                raise ConfigError(f"unknown channel {ch!r}")
        # (N, n_dm, n_dt, B, C) -> band-major channels
        return np.ascontiguousarray(np.stack(parts, axis=-1).reshape(*counts.shape[:3], -1))

    def meta(self, bands: list[str]) -> dict[str, Any]:
        """Input description saved with a model (see ``DmDtCNN.check_input_meta``)."""
        return {
            "preset": self.name,
            "bins": self.bins.name,
            "dm_edges": list(self.bins.dm_edges),
            "dt_edges": list(self.bins.dt_edges),
            "norm": self.norm,
            "bands": list(bands),
            "channels": self.channel_names(bands),
        }


#: Named representations (see the module docstring).
REPRESENTATIONS: dict[str, Representation] = {
    "paper": Representation(
        "paper", get_bins("mahabal2017"), ("paper",), "paper",
        "Mahabal et al. 2017: mahabal2017 grid, ceil(255 count/n_pairs) (0-255)"),
    "fine": Representation(
        "fine", FINE_BINS, ("p_dm_given_dt", "log_count"), "counts",
        "36 dm x 32 log dt bins, channels p(dm|dt) and log10(1+count)/5"),
}


def get_representation(name: str | Representation) -> Representation:
    """Return a :class:`Representation` by name (``'paper'`` or ``'fine'``)."""
    if isinstance(name, Representation):
        return name
    try:
        return REPRESENTATIONS[name]
    except KeyError:
        raise ConfigError(f"unknown dm-dt representation {name!r}; choose from "
                          f"{', '.join(REPRESENTATIONS)}") from None


def _same_edges(a: Any, b: Any) -> bool:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-9, atol=0))


def images_to_inputs(
    images: DmDtImages,
    representation: str | Representation,
    source: object = "<dm-dt images>",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Turn dm-dt images (e.g. from :func:`pipeline.dmdt.read_dmdt`) into network input.

    Parameters
    ----------
    images : DmDtImages
        Images with ``meta`` (edges, norm, bands). They must be on the
        representation's grid, with ``norm='counts'``, or with the
        representation's own file normalisation (``'paper'`` for ``paper``).
    representation : str or Representation
        Preset.
    source : object
        Named in error messages (e.g. the file path).

    Returns
    -------
    X : ndarray of float32, shape (N, n_dm, n_dt, n_channels)
    meta : dict
        :meth:`Representation.meta` for the images' bands.

    Raises
    ------
    InputError
        Images on another grid, or with a normalisation the preset cannot be
        computed from (say which ``lcpipe dmdt`` options to use).
    """
    rep = get_representation(representation)
    meta = images.meta
    hint = (f"make them with `lcpipe dmdt --bins {rep.bins.name} --norm counts`"
            if rep.file_norm == "counts" else
            f"make them with `lcpipe dmdt --bins {rep.bins.name} --norm {rep.file_norm}` "
            f"(or --norm counts)")
    if not (_same_edges(meta.get("dm_edges"), rep.bins.dm_edges)
            and _same_edges(meta.get("dt_edges"), rep.bins.dt_edges)):
        raise InputError(source, f"dm-dt images on grid {meta.get('bins', '?')!r} "
                         f"({len(meta.get('dm_edges', [])) - 1} dm x "
                         f"{len(meta.get('dt_edges', [])) - 1} dt bins) but representation "
                         f"{rep.name!r} needs grid {rep.bins.name!r} "
                         f"({rep.bins.shape[0]} x {rep.bins.shape[1]}): {hint}")
    norm = meta.get("norm")
    bands = list(meta.get("bands", []))
    if norm == "counts":
        X = rep.from_counts(images.images, images.n_pairs)
    elif norm == rep.file_norm == "paper":
        X = np.asarray(images.images, dtype=np.float32)
    else:
        raise InputError(source, f"dm-dt images normalised {norm!r} cannot give representation "
                         f"{rep.name!r}: {hint}")
    return np.ascontiguousarray(X, dtype=np.float32), rep.meta(bands)


def lightcurves_to_inputs(
    lcs: LightCurves,
    representation: str | Representation,
    bands: list[str] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Network input straight from light curves.

    Returns
    -------
    object_id : ndarray of str, shape (N,)
    X : ndarray of float32, shape (N, n_dm, n_dt, n_channels)
    meta : dict
    """
    rep = get_representation(representation)
    img = compute_dmdt(lcs, rep.bins, norm="counts", bands=bands)
    X, meta = images_to_inputs(img, rep)
    return img.object_id, X, meta


def subsample_lightcurves(
    lcs: LightCurves,
    n_copies: int,
    fraction: tuple[float, float] = (0.4, 0.9),
    min_points: int = 10,
    seed: int = 0,
) -> tuple[LightCurves, np.ndarray]:
    """Sparser-cadence copies of light curves: random subsets of their points.

    Copy ``k`` of series ``i`` keeps each point independently with
    probability ``f`` drawn uniformly in ``fraction``, and at least
    ``min_points`` points (all of them if the series is shorter). All bands of an
    object are thinned with the same ``f``.

    Parameters
    ----------
    lcs : LightCurves
        Sorted light curves.
    n_copies : int
        Copies per object (>= 0).
    fraction : (float, float), default=(0.4, 0.9)
        Range of the kept fraction of points.
    min_points : int, default=10
        Minimum points kept per series.
    seed : int, default=0
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    copies : LightCurves
        ``n_copies`` copies of each object, object ids ``'<id>#aug<k>'``.
    origin : ndarray of int64, shape (n_objects * n_copies,)
        For each object of ``copies`` (in order), the index of its source object
        among the objects of ``lcs`` (order of first appearance).
    """
    lo, hi = fraction
    if not 0.0 < lo <= hi <= 1.0:
        raise ConfigError(f"augmentation fraction must satisfy 0 < lo <= hi <= 1, got {fraction}")
    if n_copies < 0:
        raise ConfigError("n_copies must be >= 0")
    rng = np.random.default_rng(seed)
    oid = lcs.object_id
    new_obj = np.ones(len(oid), dtype=bool)
    new_obj[1:] = oid[1:] != oid[:-1]
    obj_of_series = np.cumsum(new_obj) - 1
    n_obj = int(new_obj.sum())
    keep_rows, ids, bands, lengths = [], [], [], []
    origin = np.repeat(np.arange(n_obj, dtype=np.int64), n_copies)
    f_all = rng.uniform(lo, hi, size=(n_obj, n_copies))
    for k in range(n_copies):
        for s in range(len(lcs)):
            a, b = int(lcs.offsets[s]), int(lcs.offsets[s + 1])
            n = b - a
            keep = rng.random(n) < f_all[obj_of_series[s], k]
            short = min(min_points, n) - int(keep.sum())
            if short > 0:  # top up to min_points with random dropped points
                dropped = np.flatnonzero(~keep)
                keep[rng.choice(dropped, size=short, replace=False)] = True
            keep_rows.append(a + np.flatnonzero(keep))
            ids.append(f"{oid[s]}#aug{k}")
            bands.append(lcs.band[s])
            lengths.append(int(keep.sum()))
    # order: copy-major above; re-sort to object-major so origin lines up
    order = np.lexsort((np.repeat(np.arange(n_copies), len(lcs)),
                        np.tile(obj_of_series, n_copies)))
    rows = [keep_rows[i] for i in order]
    idx = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    lens = np.asarray([lengths[i] for i in order], dtype=np.int64)
    copies = LightCurves(
        object_id=np.asarray([ids[i] for i in order], dtype=object),
        band=np.asarray([bands[i] for i in order], dtype=object),
        offsets=np.concatenate([[0], np.cumsum(lens)]).astype(np.int64),
        t=lcs.t[idx], mag=lcs.mag[idx], mag_err=lcs.mag_err[idx],
    )
    return copies, origin


def augmented_inputs(
    lcs: LightCurves,
    representation: str | Representation,
    n_copies: int,
    fraction: tuple[float, float] = (0.4, 0.9),
    min_points: int = 10,
    seed: int = 0,
    bands: list[str] | None = None,
) -> SampleCopies:
    """Network inputs of sparser-cadence copies (see :func:`subsample_lightcurves`).

    Returns
    -------
    models.evaluation.SampleCopies
        ``X`` (float32, shape (n_objects * n_copies, n_dm, n_dt, n_channels))
        and ``origin`` (index of the source object among the objects of
        ``lcs``); pass it as ``DmDtCNN.fit(..., augmentation=...)``.
    """
    copies, origin = subsample_lightcurves(lcs, n_copies, fraction, min_points, seed)
    if bands is None:
        from pipeline.dmdt import order_bands

        bands = order_bands(np.unique(lcs.band.astype(str)))
    _, X, _ = lightcurves_to_inputs(copies, representation, bands)
    return SampleCopies(X, origin)
