"""dm-dt images of light curves (Mahabal et al. 2017, arXiv:1709.06257).

For every pair of points i < j of a time-sorted light curve, dt = t_j - t_i
[days] and dm = m_j - m_i [mag] are binned in a 2-D histogram; each band gives
one channel. Edge convention (that of ``numpy.histogram2d``, used by the
authors): bins are half-open ``[a, b)`` except the last one of each axis,
which is closed ``[a, b]``; pairs outside the grid are not binned but still
count in the number of pairs n(n-1)/2 used by the normalisations.

Normalisations (``norm``):

``paper``
    uint8 ``ceil(255 * count / (n(n-1)/2))`` (the authors' code).
``probability``
    float32 ``count / (n(n-1)/2)``.
``max``
    float32 ``count / max(count)`` per channel.
``counts``
    int32 raw pair counts (for custom representations).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ._dmdt_impl import BACKENDS, paper_norm
from ._version import __version__
from .contract import DEFAULT_BAND, ColumnMap, open_dataset, read_error
from .errors import ConfigError, InputError
from .io import ParquetStreamWriter
from .lightcurves import LightCurves, iter_lightcurves
from .validate import CleaningConfig, CleaningCounts

__all__ = [
    "DmDtBins",
    "DmDtImages",
    "BINS_PRESETS",
    "NORMS",
    "METADATA_KEY",
    "get_bins",
    "compute_dmdt",
    "dmdt_file",
    "dmdt_table",
    "read_dmdt",
    "order_bands",
    "scan_bands",
]

#: Parquet file-metadata key holding the dm-dt settings (JSON).
METADATA_KEY = "lcpipe.dmdt"
NORMS: tuple[str, ...] = ("paper", "probability", "max", "counts")
_NORM_DTYPE = {"paper": np.uint8, "probability": np.float32, "max": np.float32,
               "counts": np.int32}
_BAND_ORDER = ("u", "g", "r", "i", "z", "y", "J", "H", "K")


@dataclass(frozen=True)
class DmDtBins:
    """Bin edges of a dm-dt image.

    Parameters
    ----------
    name : str
        Preset name, or ``'custom'``.
    dm_edges : array of float, shape (n_dm + 1,)
        Strictly increasing magnitude-difference edges [mag].
    dt_edges : array of float, shape (n_dt + 1,)
        Strictly increasing time-difference edges [days], first edge >= 0.
    """

    name: str
    dm_edges: tuple[float, ...]
    dt_edges: tuple[float, ...]

    def __post_init__(self) -> None:
        for axis, edges in (("dm", self.dm_edges), ("dt", self.dt_edges)):
            e = np.asarray(edges, dtype=np.float64)
            if e.ndim != 1 or len(e) < 2:
                raise ConfigError(f"{axis} edges need at least two values, got {list(edges)}")
            if not np.all(np.isfinite(e)) or not np.all(np.diff(e) > 0):
                raise ConfigError(f"{axis} edges must be finite and strictly increasing")
        if self.dt_edges[0] < 0:
            raise ConfigError("dt edges must start at >= 0 days (i < j in time order)")

    @property
    def shape(self) -> tuple[int, int]:
        """(n_dm, n_dt)."""
        return len(self.dm_edges) - 1, len(self.dt_edges) - 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description."""
        return {"name": self.name, "dm_edges": list(self.dm_edges),
                "dt_edges": list(self.dt_edges)}


#: Named bin presets.
BINS_PRESETS: dict[str, DmDtBins] = {
    # Mahabal et al. 2017, authors' code: 22 dm x 24 dt (their talk mentions 23 x 24)
    "mahabal2017": DmDtBins(
        "mahabal2017",
        dm_edges=(-8, -5, -3, -2.5, -2, -1.5, -1, -0.5, -0.3, -0.2, -0.1, 0, 0.1, 0.2, 0.3,
                  0.5, 1, 1.5, 2, 2.5, 3, 5, 8),
        dt_edges=(0, 1 / 145, 2 / 145, 3 / 145, 4 / 145, 1 / 25, 2 / 25, 3 / 25, 1.5, 2.5,
                  3.5, 4.5, 5.5, 7, 10, 20, 30, 60, 90, 120, 240, 600, 960, 2000, 4000),
    ),
    # ZTF SCoPe (scope-ml config.defaults.yaml, dmdt_ints): 26 dm x 26 dt
    "scope": DmDtBins(
        "scope",
        dm_edges=(-8, -4.5, -3, -2.5, -2, -1.5, -1.25, -0.75, -0.5, -0.3, -0.2, -0.1, -0.05,
                  0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.25, 1.5, 2, 2.5, 3, 4.5, 8),
        dt_edges=(0.0, 0.02759, 0.04, 0.08, 0.12, 0.3, 0.75, 1, 1.5, 2.5, 3.5, 4.5, 5.5, 7,
                  10, 20, 30, 45, 60, 90, 120, 180, 240, 360, 500, 650, 2000),
    ),
}

_FINE_DM = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0,
            5.0, 8.0)
# lcpipe's finer grid for the CNN: dm edges +-(0, 0.05, ..., 8) mag (36 bins, 0.05 mag near 0),
# dt edges 33 values log-spaced from 1/480 d (3 min) to 4000 d (0.2 dex per bin): 36 x 32
BINS_PRESETS["lcpipe_fine"] = DmDtBins(
    "lcpipe_fine",
    dm_edges=tuple(float(v) for v in np.concatenate([-np.array(_FINE_DM[::-1]), [0.0],
                                                     _FINE_DM])),
    dt_edges=tuple(float(v) for v in np.geomspace(1 / 480, 4000, 33)),
)


def get_bins(spec: str | os.PathLike[str] | DmDtBins = "mahabal2017") -> DmDtBins:
    """Return bins from a preset name, a JSON file or a :class:`DmDtBins`.

    Parameters
    ----------
    spec : {'mahabal2017', 'scope'}, path-like or DmDtBins
        A JSON file must hold ``{"dm_edges": [...], "dt_edges": [...]}`` (mag, days).
    """
    if isinstance(spec, DmDtBins):
        return spec
    if isinstance(spec, str) and spec in BINS_PRESETS:
        return BINS_PRESETS[spec]
    path = Path(spec)
    if path.suffix.lower() != ".json" and not path.exists():
        raise ConfigError(
            f"unknown bins {str(spec)!r}: use one of {sorted(BINS_PRESETS)} or a JSON file")
    try:
        obj = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(path, f"cannot read bins JSON: {exc}") from exc
    if not isinstance(obj, dict) or "dm_edges" not in obj or "dt_edges" not in obj:
        raise InputError(path, "bins JSON needs 'dm_edges' and 'dt_edges' lists")
    try:
        return DmDtBins(str(obj.get("name", "custom")),
                        tuple(float(x) for x in obj["dm_edges"]),
                        tuple(float(x) for x in obj["dt_edges"]))
    except (TypeError, ValueError) as exc:
        raise InputError(path, f"bins JSON edges must be lists of numbers ({exc})") from exc


@dataclass
class DmDtImages:
    """dm-dt images of N objects.

    Attributes
    ----------
    object_id : ndarray of str, shape (N,)
    images : ndarray, shape (N, n_dm, n_dt, n_bands)
        dtype uint8 (``paper``), float32 (``probability``, ``max``) or int32 (``counts``).
    n_points : ndarray of int64, shape (N, n_bands)
        Points per band.
    n_pairs : ndarray of int64, shape (N, n_bands)
        n(n-1)/2 per band (all pairs, inside the grid or not).
    meta : dict
        ``dm_edges``, ``dt_edges``, ``bins``, ``norm``, ``bands``, ``shape``, ``version``.
    """

    object_id: np.ndarray
    images: np.ndarray
    n_points: np.ndarray
    n_pairs: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.object_id)

    @property
    def missing_bands(self) -> np.ndarray:
        """Boolean (N, n_bands): True where the object has no point in that band."""
        return self.n_points == 0


def order_bands(bands: Any) -> list[str]:
    """Sort band names by wavelength for known filters (u g r i z y J H K), then by name."""
    uniq = sorted({str(b) for b in bands})
    known = [b for b in _BAND_ORDER if b in uniq]
    return known + [b for b in uniq if b not in known]


def _normalise(counts: np.ndarray, n_pairs: np.ndarray, norm: str) -> np.ndarray:
    """counts (N, n_dm, n_dt, B) int64, n_pairs (N, B) -> normalised images."""
    if norm == "counts":
        return counts.astype(np.int32)
    npairs = n_pairs[:, None, None, :]
    if norm == "paper":
        # exact integer form of ceil(255 * count / npairs), compiled
        return paper_norm(counts, np.ascontiguousarray(n_pairs, dtype=np.int64))
    if norm == "probability":
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(npairs > 0, counts / np.maximum(npairs, 1), 0.0)
        return out.astype(np.float32)
    if norm == "max":
        mx = counts.max(axis=(1, 2), keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.where(mx > 0, counts / np.maximum(mx, 1), 0.0)
        return out.astype(np.float32)
    raise ConfigError(f"unknown normalisation {norm!r}: use one of {list(NORMS)}")


def compute_dmdt(
    lcs: LightCurves,
    bins: str | os.PathLike[str] | DmDtBins = "mahabal2017",
    norm: str = "paper",
    bands: list[str] | None = None,
    method: str = "auto",
) -> DmDtImages:
    """Compute dm-dt images, one channel per band.

    Parameters
    ----------
    lcs : LightCurves
        Clean light curves (times strictly increasing within a series).
    bins : {'mahabal2017', 'scope'}, path-like or DmDtBins, default 'mahabal2017'
        Bin edges (mag, days).
    norm : {'paper', 'probability', 'max', 'counts'}, default 'paper'
        Pixel normalisation (see module docstring).
    bands : list of str, optional
        Channel order. Default: the bands present, ordered by :func:`order_bands`.
        Series of other bands are ignored; objects without a band get a zero channel.
    method : {'auto', 'numba', 'numpy', 'light-curve'}, default 'auto'
        Counting backend; all give identical counts on clean input ('light-curve'
        differs only for pairs exactly on the upper outer edges). 'auto' is 'numba'.

    Returns
    -------
    DmDtImages
        Objects in order of first appearance in ``lcs``.
    """
    grid = get_bins(bins)
    if norm not in NORMS:
        raise ConfigError(f"unknown normalisation {norm!r}: use one of {list(NORMS)}")
    name = "numba" if method == "auto" else method
    if name not in BACKENDS:
        raise ConfigError(f"unknown dm-dt method {method!r}: use 'auto' or one of "
                          f"{list(BACKENDS)}")
    band_list = list(bands) if bands is not None else order_bands(pd.unique(lcs.band))
    series_band = pd.Index(band_list).get_indexer(lcs.band.astype(str)).astype(np.int64)
    # object index per series (series of one object are contiguous)
    oid = lcs.object_id
    new_obj = np.ones(len(oid), dtype=bool)
    if len(oid):
        new_obj[1:] = oid[1:] != oid[:-1]
    obj_of_series = np.cumsum(new_obj) - 1
    objects = oid[new_obj]
    n_dm, n_dt = grid.shape
    counts = BACKENDS[name](lcs, np.asarray(grid.dm_edges, np.float64),
                            np.asarray(grid.dt_edges, np.float64))
    n_obj, n_b = len(objects), len(band_list)
    use = series_band >= 0
    if n_b == 1 and use.all() and n_obj == len(lcs):
        full = counts[..., None]  # one series per object: no copy
        n_points = lcs.n_points[:, None].astype(np.int64)
    else:
        full = np.zeros((n_obj, n_dm, n_dt, n_b), dtype=np.int64)
        n_points = np.zeros((n_obj, n_b), dtype=np.int64)
        full[obj_of_series[use], :, :, series_band[use]] = counts[use]
        n_points[obj_of_series[use], series_band[use]] = lcs.n_points[use]
    n_pairs = n_points * (n_points - 1) // 2
    meta = {
        "bins": grid.name,
        "dm_edges": list(grid.dm_edges),
        "dt_edges": list(grid.dt_edges),
        "norm": norm,
        "bands": band_list,
        "shape": [n_dm, n_dt, n_b],
        "dtype": np.dtype(_NORM_DTYPE[norm]).name,
        "edge_convention": "numpy.histogram2d: [a, b) except the last bin [a, b]",
        "version": __version__,
    }
    return DmDtImages(objects, _normalise(full, n_pairs, norm), n_points, n_pairs, meta)


def scan_bands(path: str | os.PathLike[str], cmap: ColumnMap) -> list[str]:
    """Distinct band names of a table (after ``cmap``'s renames, by wavelength), reading only
    its band column."""
    import pyarrow.compute as pc

    dset = open_dataset(path)
    cols = cmap.resolve(dset.schema.names, path)
    if cols["band"] is None:
        return [DEFAULT_BAND]
    seen: set[Any] = set()
    try:
        for rb in dset.scanner(columns=[cols["band"]]).to_batches():
            seen.update(v for v in pc.unique(rb.column(0)).to_pylist() if v is not None)
    except (pa.ArrowException, OSError) as exc:
        raise read_error(path, exc) from exc
    return order_bands(str(cmap.band_values.get(v, v)) for v in seen)


def _schema(n_pix: int, n_bands: int, norm: str) -> pa.Schema:
    value = pa.from_numpy_dtype(np.dtype(_NORM_DTYPE[norm]))
    return pa.schema([
        ("object_id", pa.string()),
        ("n_points", pa.int64()),
        ("n_pairs", pa.int64()),
        ("n_points_band", pa.list_(pa.int64(), n_bands)),
        ("missing_bands", pa.list_(pa.string())),
        ("image", pa.list_(value, n_pix)),
    ])


def _to_table(img: DmDtImages, schema: pa.Schema) -> pa.Table:
    n = len(img)
    n_pix = int(np.prod(img.images.shape[1:]))
    flat = np.ascontiguousarray(img.images).reshape(n, n_pix)  # n = 0 too
    n_b = img.n_points.shape[1]
    bands = np.asarray(img.meta["bands"], dtype=object)
    missing = [list(bands[row]) for row in img.missing_bands]
    return pa.table({
        "object_id": pa.array(img.object_id.astype(str), pa.string()),
        "n_points": pa.array(img.n_points.sum(axis=1), pa.int64()),
        "n_pairs": pa.array(img.n_pairs.sum(axis=1), pa.int64()),
        "n_points_band": pa.FixedSizeListArray.from_arrays(
            pa.array(img.n_points.reshape(-1), pa.int64()), n_b),
        "missing_bands": pa.array(missing, pa.list_(pa.string())),
        "image": pa.FixedSizeListArray.from_arrays(
            pa.array(flat.reshape(-1), schema.field("image").type.value_type), n_pix),
    }, schema=schema)


def dmdt_table(img: DmDtImages) -> pa.Table:
    """The Arrow table of :func:`dmdt_file`'s format for images in memory.

    Write it with ``pipeline.io.write_parquet_atomic(table, path, metadata={METADATA_KEY:
    img.meta})``; :func:`read_dmdt` reads it back.
    """
    n_dm, n_dt, n_b = img.meta["shape"]
    return _to_table(img, _schema(n_dm * n_dt * n_b, n_b, img.meta["norm"]))


def dmdt_file(
    path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    bins: str | os.PathLike[str] | DmDtBins = "mahabal2017",
    norm: str = "paper",
    cmap: ColumnMap | None = None,
    bands: list[str] | None = None,
    config: CleaningConfig | None = None,
    chunk_rows: int = 1_000_000,
    n_jobs: int = 1,
) -> dict[str, Any]:
    """Compute dm-dt images of a light-curve table and write them to Parquet, streaming.

    The input is cleaned chunk by chunk with the rules of :mod:`pipeline.validate`
    (counts reported in the returned summary and the file metadata), so raw
    exports work as well as ``lcpipe validate`` output, in any row order (input not
    grouped by object is partitioned first, in a hidden temporary folder beside
    ``out``: :mod:`pipeline.partition`). Memory stays bounded by ``chunk_rows``.

    Parameters
    ----------
    path : path-like
        Input light-curve table.
    out : path-like
        Output Parquet file (written atomically).
    bins, norm, bands
        See :func:`compute_dmdt`. ``bands`` defaults to all bands of the input.
    cmap : ColumnMap, optional
        Column mapping of the input.
    config : CleaningConfig, optional
        Cleaning settings.
    chunk_rows : int, default 1_000_000
        Rows per processing chunk.
    n_jobs : int, default 1
        Threads for the counting kernel; -1 uses all cores.

    Returns
    -------
    dict
        Summary: objects written, pairs, cleaning counts, output path.
    """
    import numba

    cmap = cmap or ColumnMap()
    grid = get_bins(bins)
    if norm not in NORMS:
        raise ConfigError(f"unknown normalisation {norm!r}: use one of {list(NORMS)}")
    band_list = list(bands) if bands else scan_bands(path, cmap)
    threads = numba.config.NUMBA_NUM_THREADS if n_jobs in (-1, 0) else max(1, int(n_jobs))
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    n_dm, n_dt = grid.shape
    schema = _schema(n_dm * n_dt * len(band_list), len(band_list), norm)
    counts = CleaningCounts()
    meta: dict[str, Any] = {}
    n_obj = n_pairs = 0
    probe = compute_dmdt(LightCurves.from_frame(_empty_frame()), grid, norm, band_list)
    meta = probe.meta
    with ParquetStreamWriter(out, schema, metadata={METADATA_KEY: meta}) as writer:
        for lcs in iter_lightcurves(path, cmap, chunk_rows, clean=True, config=config,
                                    counts=counts, workdir=Path(out).parent):
            if not len(lcs):  # every object of the block quarantined
                continue
            img = compute_dmdt(lcs, grid, norm, band_list)
            writer.write(_to_table(img, schema))
            n_obj += len(img)
            n_pairs += int(img.n_pairs.sum())
        if not n_obj:  # raised inside: the writer removes its temporary file
            raise InputError(path, "no light curve left after cleaning (quarantined objects: "
                             f"{counts.objects_quarantined})")
    return {
        "output": str(out),
        "objects": n_obj,
        "pairs": n_pairs,
        "bins": grid.name,
        "shape": meta["shape"],
        "norm": norm,
        "bands": band_list,
        "cleaning": counts.to_dict(),
    }


def _empty_frame():
    import pandas as pd

    return pd.DataFrame({"object_id": pd.Series([], dtype=object),
                         "band": pd.Series([], dtype=object),
                         "t": [], "mag": [], "mag_err": []})


def read_dmdt(path: str | os.PathLike[str]) -> DmDtImages:
    """Read dm-dt images written by :func:`dmdt_file`.

    Returns
    -------
    DmDtImages
        ``images`` of shape (N, n_dm, n_dt, n_bands).

    Raises
    ------
    InputError
        If the file is unreadable or not a dm-dt file.
    """
    try:
        pf = pq.ParquetFile(path)
        table = pf.read()
    except (OSError, pa.ArrowException) as exc:
        raise InputError(path, f"cannot read dm-dt Parquet: {exc}") from exc
    raw = (table.schema.metadata or {}).get(METADATA_KEY.encode())
    if raw is None:
        raise InputError(path, f"no '{METADATA_KEY}' metadata: not written by `lcpipe dmdt`")
    try:
        meta = json.loads(raw)
        n_dm, n_dt, n_b = (int(x) for x in meta["shape"])
        dtype = _NORM_DTYPE[meta["norm"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(path, f"damaged '{METADATA_KEY}' metadata: {exc}") from exc
    missing = [c for c in ("object_id", "image", "n_points_band") if c not in table.column_names]
    if missing:
        raise InputError(path, f"dm-dt table lacks column(s) {', '.join(missing)}")
    n = table.num_rows
    col = table.column("image").combine_chunks()
    if not (pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type)
            or pa.types.is_large_list(col.type)) or not (
            pa.types.is_integer(col.type.value_type) or pa.types.is_floating(col.type.value_type)):
        raise InputError(path, f"column 'image' has type {col.type}, not a list of pixel values")
    values = col.values.to_numpy(zero_copy_only=False) if n else np.zeros(0)
    if values.size != n * n_dm * n_dt * n_b:
        raise InputError(path, f"images hold {values.size} values, not {n} x {n_dm} x {n_dt} "
                         f"x {n_b} as the metadata says")
    images = values.reshape(n, n_dm, n_dt, n_b).astype(dtype, copy=False)
    if not np.isfinite(images).all():
        raise InputError(path, "images hold NaN or infinite values")
    npb = table.column("n_points_band").combine_chunks()
    n_points = (npb.values.to_numpy(zero_copy_only=False).reshape(n, n_b) if n
                else np.zeros((0, n_b), np.int64))
    ids = np.asarray(table.column("object_id").to_pylist(), dtype=object)
    if n and (pd.isna(ids).any() or len(set(ids)) != n):
        dup = pd.Series(ids)
        bad = dup[dup.duplicated() | dup.isna()].iloc[0]
        raise InputError(path, "object listed twice (or without id) in the dm-dt table",
                         object_id=bad)
    return DmDtImages(
        object_id=ids,
        images=images,
        n_points=n_points,
        n_pairs=n_points * (n_points - 1) // 2,
        meta=meta,
    )
