"""Synthetic survey light curves of known classes (``lcpipe simulate``).

The simulator draws light curves of a handful of variability classes with
textbook shapes and observes them with a CRTS-like cadence: one observing
season per year whose timing depends on the object's right ascension, no
observations around full moon, four exposures about ten minutes apart on
each observed night, occasional lost exposures, and magnitude-dependent
errors that follow the CRTS error curve (0.05 mag floor, 0.2 mag at
V = 19.3). Per-class shapes:

============  ================================================================
label         model (``delta``, mag; 0 = brightest state)
============  ================================================================
``RRab``      sawtooth: slow linear decline, fast rise (12-20% of the cycle);
              P = 0.45-0.85 d, amplitude 0.5-1.3 mag
``RRc``       skewed sinusoid; P = 0.24-0.42 d, amplitude 0.25-0.55 mag
``EW``        contact binary, continuous variation, two minima per orbit
              (secondary 75-100% of primary depth); P = 0.25-0.7 d (orbital),
              amplitude 0.15-0.8 mag
``EA``        detached binary: flat, with narrow eclipses (4-12% of the orbit)
              at phase 0 and near 0.5; P = 0.8-10 d, primary depth 0.3-1.2 mag
``LPV``       long-period variable, skewed sinusoid; P = 100-600 d,
              amplitude 1.5-4.5 mag
``constant``  no variability: scatter equals the stated errors
``AGN``       damped random walk (Ornstein-Uhlenbeck), timescale tau =
              30-1000 d, structure function SF_inf = 0.1-0.4 mag
============  ================================================================

Everything is deterministic given the seed, and each object is simulated
from its own random stream (Philox counter-based generator, key from
``numpy.random.SeedSequence(seed)``, counter set by the object's index), so
object ``sim0000042`` is the same whatever the chunk size or the range of
objects requested. Random numbers are drawn per object, the light-curve
arithmetic is vectorised over a chunk of objects.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.special import ndtri

from ._version import __version__
from .errors import ConfigError
from .io import ParquetStreamWriter, atomic_path

__all__ = [
    "CLASSES",
    "BANDS",
    "METADATA_KEY",
    "SurveyConfig",
    "Simulation",
    "SimulatedSurvey",
    "simulate_lightcurves",
    "simulate_survey",
]

#: Class labels the simulator knows, in the order used for class draws.
CLASSES: tuple[str, ...] = ("RRab", "RRc", "EW", "EA", "LPV", "constant", "AGN")

#: Passbands: name -> (magnitude offset from V [mag], amplitude relative to V).
BANDS: dict[str, tuple[float, float]] = {
    "B": (0.45, 1.30),
    "g": (0.30, 1.20),
    "V": (0.00, 1.00),
    "r": (-0.15, 0.85),
    "i": (-0.35, 0.70),
    "z": (-0.45, 0.60),
}

#: Parquet metadata key under which the simulation parameters are stored.
METADATA_KEY = "lcpipe_simulate"

_YEAR = 365.25  # days
_SYNODIC_MONTH = 29.530589  # days
_NEW_MOON_MJD = 51549.76  # 2000-01-06 18:14 UTC
_N_SCALARS = 16  # uniforms drawn per object before its nightly block
_N_NIGHT = 6  # uniforms per night: season, day, start, moon, band, seeing
_N_SLOT = 2  # uniforms per exposure slot: loss, time jitter

# Per-class ranges: period [days] (log-uniform) and amplitude [mag] (uniform).
_PERIOD = {"RRab": (0.45, 0.85), "RRc": (0.24, 0.42), "EW": (0.25, 0.7),
           "EA": (0.8, 10.0), "LPV": (100.0, 600.0)}
_AMPLITUDE = {"RRab": (0.5, 1.3), "RRc": (0.25, 0.55), "EW": (0.15, 0.8),
              "EA": (0.3, 1.2), "LPV": (1.5, 4.5), "constant": (0.0, 0.0),
              "AGN": (0.1, 0.4)}
_TAU = (30.0, 1000.0)  # DRW timescale [days], log-uniform

_SCHEMA = pa.schema([
    ("object_id", pa.string()),
    ("band", pa.string()),
    ("t", pa.float64()),
    ("mag", pa.float64()),
    ("mag_err", pa.float64()),
])

_TRUTH_COLUMNS = ("object_id", "label", "period", "amplitude", "mag_ref", "tau")


@dataclass(frozen=True)
class SurveyConfig:
    """Cadence and photometric-error model of the simulated survey.

    The defaults imitate the Catalina Real-time Transient Survey (CSS, 2005-2013).

    Parameters
    ----------
    start_mjd : float, default 53464.0
        Survey start, MJD [days].
    min_seasons, max_seasons : int, default 4, 9
        Range of the number of yearly observing seasons of an object (uniform);
        the baseline is about this many years.
    season_length : tuple of float, default (180.0, 250.0)
        Range of the length of an observing season [days] (uniform).
    min_points, max_points : int, default 50, 500
        Range of the number of scheduled exposures of an object (log-uniform);
        ``visit_loss`` of them are lost, so the final count is a little lower.
    visits_per_night : int, default 4
        Exposures per observed night (CRTS takes 4 within about 30 minutes).
    visit_spacing : float, default 10 / 1440
        Time between exposures of one night [days]; jittered by +-15%.
    visit_loss : float, default 0.05
        Probability that an exposure is lost.
    moon_gap : float, default 7.0
        Nights around full moon without observations [days].
    mag_range : tuple of float, default (13.0, 19.5)
        Range of the V magnitude of an object [mag]: its brightest and faintest
        model states lie inside it (uniform placement).
    error_floor : float, default 0.05
        Systematic error added in quadrature [mag].
    error_ref : float, default 0.2
        Random error at ``ref_mag`` [mag].
    ref_mag : float, default 19.3
        Magnitude at which the random error is ``error_ref`` [mag].
    source_fraction : float, default 0.68
        Share of the random variance at ``ref_mag`` due to the source's photon
        noise (scales as flux); the rest is sky noise (constant flux error).
    seeing_scatter : float, default 0.15
        Log-normal scatter of the random error from night to night (seeing, sky).
    """

    start_mjd: float = 53464.0
    min_seasons: int = 4
    max_seasons: int = 9
    season_length: tuple[float, float] = (180.0, 250.0)
    min_points: int = 50
    max_points: int = 500
    visits_per_night: int = 4
    visit_spacing: float = 10.0 / 1440.0
    visit_loss: float = 0.05
    moon_gap: float = 7.0
    mag_range: tuple[float, float] = (13.0, 19.5)
    error_floor: float = 0.05
    error_ref: float = 0.2
    ref_mag: float = 19.3
    source_fraction: float = 0.68
    seeing_scatter: float = 0.15

    def __post_init__(self) -> None:
        checks = [
            (1 <= self.min_seasons <= self.max_seasons, "need 1 <= min_seasons <= max_seasons"),
            (0 < self.season_length[0] <= self.season_length[1] <= _YEAR - 2 * self.moon_gap,
             "season_length must be an increasing pair within (0, 365.25 - 2*moon_gap] days"),
            (1 <= self.min_points <= self.max_points, "need 1 <= min_points <= max_points"),
            (self.visits_per_night >= 1, "visits_per_night must be >= 1"),
            (0 < self.visit_spacing * self.visits_per_night < 0.4,
             "visit_spacing * visits_per_night must be in (0, 0.4) days"),
            (0 <= self.visit_loss < 1, "visit_loss must be in [0, 1)"),
            (0 <= self.moon_gap < _SYNODIC_MONTH / 2, "moon_gap must be in [0, 14.7) days"),
            (self.mag_range[0] < self.mag_range[1], "mag_range must be increasing"),
            (self.error_floor >= 0 and self.error_ref > 0, "errors must be positive"),
            (0 <= self.source_fraction <= 1, "source_fraction must be in [0, 1]"),
            (self.seeing_scatter >= 0, "seeing_scatter must be >= 0"),
        ]
        for ok, problem in checks:
            if not ok:
                raise ConfigError(f"bad SurveyConfig: {problem}")

    def magnitude_error(self, mag: np.ndarray, seeing: np.ndarray | float = 1.0) -> np.ndarray:
        """Return the 1-sigma magnitude error of a measurement.

        Parameters
        ----------
        mag : ndarray of float
            True magnitude [mag].
        seeing : ndarray of float or float, default 1.0
            Multiplier of the random (non-systematic) error for the night.

        Returns
        -------
        ndarray of float
            ``sqrt(floor**2 + seeing**2 * ref**2 * (f x + (1 - f) x**2))`` [mag]
            with ``x = 10**(0.4 (mag - ref_mag))`` and ``f = source_fraction``.
        """
        x = np.exp((0.4 * math.log(10.0)) * (np.asarray(mag, dtype=np.float64) - self.ref_mag))
        f = self.source_fraction
        random_var = self.error_ref**2 * (f * x + (1.0 - f) * x * x)
        return np.sqrt(self.error_floor**2 + np.square(seeing) * random_var)


class Simulation(NamedTuple):
    """Light curves and true parameters of a range of simulated objects.

    Attributes
    ----------
    lightcurves : pandas.DataFrame
        Long table ``object_id, band, t, mag, mag_err`` sorted by object_id,
        band, t; t in MJD [days], mag and mag_err in [mag].
    truth : pandas.DataFrame
        One row per object: ``object_id``, ``label`` (one of :data:`CLASSES`),
        ``period`` [days] (NaN for non-periodic classes; the orbital period for
        eclipsing binaries), ``amplitude`` [mag] (peak-to-peak in V; the primary
        eclipse depth for EA; SF_inf for AGN; 0 for constant), ``mag_ref`` [mag]
        (V magnitude of the brightest state; the mean for AGN) and ``tau``
        [days] (DRW timescale, NaN except for AGN).
    """

    lightcurves: pd.DataFrame
    truth: pd.DataFrame


class SimulatedSurvey(NamedTuple):
    """Files written by :func:`simulate_survey`.

    Attributes
    ----------
    lightcurves : Path
        ``OUT/lightcurves.parquet`` (lcpipe long format).
    labels : Path
        ``OUT/labels.csv`` (columns of :attr:`Simulation.truth`).
    n_objects : int
        Number of light curves written.
    n_rows : int
        Number of measurements written.
    """

    lightcurves: Path
    labels: Path
    n_objects: int
    n_rows: int


def _check_common(seed: int, bands: Sequence[str], classes: Sequence[str] | None,
                  ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(bands, str):
        bands = [b.strip() for b in bands.split(",") if b.strip()]
    bands = tuple(bands)
    unknown = [b for b in bands if b not in BANDS]
    if not bands or unknown or len(set(bands)) != len(bands):
        raise ConfigError(f"bad bands {list(bands)}: give distinct names from {list(BANDS)}")
    classes = CLASSES if classes is None else tuple(classes)
    unknown = [c for c in classes if c not in CLASSES]
    if not classes or unknown or len(set(classes)) != len(classes):
        raise ConfigError(
            f"bad classes {list(classes)}: give distinct names from {list(CLASSES)}")
    return bands, classes


def _philox_key(seed: int) -> np.ndarray:
    return np.random.SeedSequence(int(seed)).generate_state(2, np.uint64)


class _Randoms(NamedTuple):
    scalars: np.ndarray  # (n, _N_SCALARS) uniforms per object
    code: np.ndarray  # (n,) class index into ``classes``
    n_nights: np.ndarray  # (n,) observed nights per object
    nightly: np.ndarray  # (sum(n_nights), _N_NIGHT + _N_SLOT * visits) uniforms
    noise: np.ndarray  # (sum(n_nights), visits) standard normals (photometric noise)
    drw: np.ndarray  # (sum(n_nights of AGN), visits) standard normals (AGN walk)


def _draw_randoms(start: int, n: int, key: np.ndarray, classes: tuple[str, ...],
                  config: SurveyConfig) -> _Randoms:
    """Draw the random numbers of objects ``start .. start+n-1``.

    Object ``i`` uses its own Philox stream: counter ``(0, 0, i, 0)`` under the
    survey's key, so its numbers do not depend on which other objects are drawn.
    """
    bitgen = np.random.Philox(key=key)
    rng = np.random.Generator(bitgen)
    visits = config.visits_per_night
    width = _N_NIGHT + _N_SLOT * visits
    lo, hi = math.log(config.min_points), math.log(config.max_points)
    n_classes = len(classes)
    agn = classes.index("AGN") if "AGN" in classes else -1
    scalars = np.empty((n, _N_SCALARS))
    code = np.empty(n, dtype=np.int64)
    n_nights = np.empty(n, dtype=np.int64)
    nightly, noise, drw = [], [], []
    counter = np.zeros(4, dtype=np.uint64)
    state = {"bit_generator": "Philox", "state": {"counter": counter, "key": key},
             "buffer": np.zeros(4, dtype=np.uint64), "buffer_pos": 4, "has_uint32": 0,
             "uinteger": 0}
    for j in range(n):
        counter[2] = start + j  # the setter copies the values; no buffered output
        bitgen.state = state
        s = rng.random(_N_SCALARS)
        scalars[j] = s
        c = min(int(s[0] * n_classes), n_classes - 1)
        code[j] = c
        k = math.ceil(math.exp(lo + s[1] * (hi - lo)) / visits)
        n_nights[j] = k
        nightly.append(rng.random((k, width)))
        noise.append(rng.standard_normal((k, visits)))
        if c == agn:
            drw.append(rng.standard_normal((k, visits)))

    def stack(parts: list[np.ndarray], cols: int) -> np.ndarray:
        return np.concatenate(parts) if parts else np.empty((0, cols))

    return _Randoms(scalars, code, n_nights, stack(nightly, width), stack(noise, visits),
                    stack(drw, visits))


def _log_uniform(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))


def _class_parameters(scalars: np.ndarray, cls: np.ndarray, classes: tuple[str, ...],
                      config: SurveyConfig) -> dict[str, np.ndarray]:
    """Per-object label, period, amplitude, DRW timescale and reference magnitude."""
    n = len(scalars)
    label = np.asarray(classes, dtype=object)[cls] if n else np.array([], dtype=object)
    period = np.full(n, np.nan)
    amplitude = np.zeros(n)
    tau = np.full(n, np.nan)
    dmin = np.zeros(n)  # model range (delta) used to place mag_ref inside mag_range
    dmax = np.zeros(n)
    for code, name in enumerate(classes):
        m = cls == code
        a_lo, a_hi = _AMPLITUDE[name]
        amplitude[m] = a_lo + scalars[m, 7] * (a_hi - a_lo)
        if name in _PERIOD:
            period[m] = _log_uniform(scalars[m, 6], *_PERIOD[name])
            dmax[m] = amplitude[m]
        elif name == "AGN":
            tau[m] = _log_uniform(scalars[m, 12], *_TAU)
            sigma = amplitude[m] / math.sqrt(2.0)
            dmin[m], dmax[m] = -3.0 * sigma, 3.0 * sigma
    lo, hi = config.mag_range
    room = np.maximum(hi - lo - (dmax - dmin), 0.0)
    mag_ref = lo - dmin + scalars[:, 5] * room
    return {"label": label, "code": cls, "period": period, "amplitude": amplitude,
            "tau": tau, "mag_ref": mag_ref}


def _warp(phase: np.ndarray, skew: np.ndarray | float) -> np.ndarray:
    """Monotone phase warp that skews a sinusoid (``|skew| < 1``)."""
    return phase + skew * np.sin(2 * np.pi * phase) / (2 * np.pi)


def _periodic_delta(name: str, phase: np.ndarray, amp: np.ndarray,
                    shape: np.ndarray) -> np.ndarray:
    """Model magnitude offset [mag] of a periodic class; 0 = brightest, ``amp`` = faintest.

    ``phase`` in [0, 1); ``shape`` holds the uniforms ``(n, 3)`` of the class's
    shape parameters.
    """
    if name == "RRab":
        # maximum light at phase 0, linear decline, rise during the last 12-20%
        rise = 0.12 + 0.08 * shape[:, 0]
        return np.where(phase < 1 - rise, amp * phase / (1 - rise), amp * (1 - phase) / rise)
    if name in ("RRc", "LPV"):
        # skewed sinusoid, brightening faster than fading
        skew = 0.25 if name == "RRc" else 0.2 + 0.3 * shape[:, 0]
        return amp * 0.5 * (1 - np.cos(2 * np.pi * _warp(phase, skew)))
    if name == "EW":
        # zero at quadratures, amp at primary (phase 0), depth*amp at secondary (0.5)
        depth = 0.75 + 0.25 * shape[:, 0]
        both = 0.5 * (1 + np.cos(4 * np.pi * phase))
        which = depth + (1 - depth) * 0.5 * (1 + np.cos(2 * np.pi * phase))
        return amp * both * which
    if name == "EA":
        secondary = 0.8 * shape[:, 0] * amp
        width = 0.04 + 0.08 * shape[:, 1]  # full eclipse duration, in phase
        phase2 = 0.5 + 0.04 * (shape[:, 2] - 0.5)  # slightly eccentric orbits
        d1 = np.abs((phase + 0.5) % 1.0 - 0.5)
        d2 = np.abs(phase - phase2)
        half = width / 2
        return (amp * np.clip(1 - (d1 / half) ** 2, 0, None)
                + secondary * np.clip(1 - (d2 / half) ** 2, 0, None))
    raise AssertionError(name)  # pragma: no cover


def _drw(t: np.ndarray, starts: np.ndarray, tau: np.ndarray, sigma: np.ndarray,
         z: np.ndarray) -> np.ndarray:
    """Damped random walk sampled exactly at times ``t``.

    Parameters
    ----------
    t : ndarray of float, shape (n_rows,)
        Times [days], increasing within each object.
    starts : ndarray of int, shape (n_objects + 1,)
        Object ``i`` is rows ``starts[i]:starts[i+1]``.
    tau, sigma : ndarray of float, shape (n_objects,)
        Timescale [days] and stationary standard deviation [mag] per object.
    z : ndarray of float, shape (n_rows,)
        Standard normal deviates driving the walk.

    Returns
    -------
    ndarray of float, shape (n_rows,)
        ``x[0] = sigma z[0]``, ``x[k] = a x[k-1] + sigma sqrt(1 - a**2) z[k]``
        with ``a = exp(-(t[k] - t[k-1]) / tau)``.
    """
    lengths = np.diff(starts)
    n_obj = len(lengths)
    out = np.empty(len(t))
    if len(t) == 0:
        return out
    width = int(lengths.max())
    # pad into (n_obj, width) and step along the columns, all objects at once
    pos = np.arange(len(t)) - np.repeat(starts[:-1], lengths)
    row = np.repeat(np.arange(n_obj), lengths)
    last = t[np.maximum(starts[1:] - 1, 0)]
    tt = np.repeat(last[:, None], width, axis=1)  # pad: repeat the last time
    zz = np.zeros((n_obj, width))
    tt[row, pos] = t
    zz[row, pos] = z
    xx = np.empty((n_obj, width))
    xx[:, 0] = sigma * zz[:, 0]
    for k in range(1, width):
        a = np.exp(-(tt[:, k] - tt[:, k - 1]) / tau)
        xx[:, k] = a * xx[:, k - 1] + sigma * np.sqrt(1.0 - a * a) * zz[:, k]
    out[:] = xx[row, pos]
    return out


def _object_ids(index: np.ndarray, width: int) -> np.ndarray:
    return np.array([f"sim{i:0{width}d}" for i in index.tolist()], dtype=object)


def _simulate_chunk(start: int, n: int, key: np.ndarray, bands: tuple[str, ...],
                    classes: tuple[str, ...], config: SurveyConfig,
                    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Simulate objects ``start .. start+n-1``.

    Returns the points (object index relative to ``start``, band index, t, mag,
    mag_err; sorted by object, band, t) and the per-object parameters.
    """
    rnd = _draw_randoms(start, n, key, classes, config)
    scalars, block = rnd.scalars, rnd.nightly
    par = _class_parameters(scalars, rnd.code, classes, config)
    visits = config.visits_per_night
    nb = len(bands)

    # --- nights: season (RA-dependent timing), day in season, moon gap
    obj_n = np.repeat(np.arange(n), rnd.n_nights)
    n_seasons = config.min_seasons + np.minimum(
        (scalars[:, 2] * (config.max_seasons - config.min_seasons + 1)).astype(np.int64),
        config.max_seasons - config.min_seasons)[obj_n]
    season_start = (config.start_mjd + config.moon_gap + scalars[:, 3] * _YEAR)[obj_n]
    length = (config.season_length[0] + scalars[:, 4] * (
        config.season_length[1] - config.season_length[0]))[obj_n]
    season = np.floor(block[:, 0] * n_seasons)
    night = np.floor(season_start + season * _YEAR + block[:, 1] * length)
    moon_phase = (night - _NEW_MOON_MJD) % _SYNODIC_MONTH
    in_gap = np.abs(moon_phase - _SYNODIC_MONTH / 2) < config.moon_gap / 2
    night += np.where(in_gap, np.where(block[:, 3] < 0.5, -1.0, 1.0) * config.moon_gap, 0.0)
    # Arizona night: MJD fraction ~0.08 (dusk) to ~0.54 (dawn)
    night_start = night + 0.1 + (0.4 - visits * config.visit_spacing) * block[:, 2]
    seeing = np.exp(config.seeing_scatter * ndtri(_open01(block[:, 5])))
    first_band = np.minimum((block[:, 4] * nb).astype(np.int64), nb - 1)
    # row of each AGN night in rnd.drw (-1 for other classes)
    is_agn = (par["label"] == "AGN")[obj_n] if n else np.zeros(0, dtype=bool)
    drw_row = np.where(is_agn, np.cumsum(is_agn) - 1, -1)

    # --- exposures: nights in time order, then the kept slots of each night
    night_order = _group_sort(obj_n, night_start, stable=False)
    keep = block[night_order, _N_NIGHT:_N_NIGHT + visits] >= config.visit_loss
    keep[:, 0] = True  # an observed night has at least one exposure
    flat = np.flatnonzero(keep)
    nsel = night_order[flat // visits]
    slot = flat % visits
    jitter = block[nsel, _N_NIGHT + visits + slot]
    t = night_start[nsel] + (slot + 0.3 * (jitter - 0.5)) * config.visit_spacing
    obj = obj_n[nsel]
    # nearly sorted already: only exposures of one night drawn twice interleave
    order = _group_sort(obj, t)
    nsel, slot, t, obj = nsel[order], slot[order], t[order], obj[order]
    band = (first_band[nsel] + slot) % nb
    z_noise = rnd.noise[nsel, slot]
    seeing_pt = seeing[nsel]
    counts = np.bincount(obj, minlength=n)

    # --- model magnitudes (V), then per band
    code = par["code"]
    delta = np.zeros(len(t))
    code_pt = code[obj]
    for c, name in enumerate(classes):
        if name == "constant":
            continue
        rows = np.flatnonzero(code_pt == c)
        if len(rows) == 0:
            continue
        o = obj[rows]
        if name == "AGN":
            members = np.flatnonzero(code == c)
            sub_starts = np.zeros(len(members) + 1, dtype=np.int64)
            np.cumsum(counts[members], out=sub_starts[1:])
            # rows of AGN objects are contiguous per object and in object order
            z_drw = rnd.drw[drw_row[nsel[rows]], slot[rows]]
            delta[rows] = _drw(t[rows], sub_starts, par["tau"][members],
                               par["amplitude"][members] / math.sqrt(2.0), z_drw)
            continue
        period = par["period"][o]
        phase = ((t[rows] - config.start_mjd) / period + scalars[o, 8]) % 1.0
        delta[rows] = _periodic_delta(name, phase, par["amplitude"][o], scalars[o, 9:12])
    offsets = np.array([BANDS[b][0] for b in bands])
    scales = np.array([BANDS[b][1] for b in bands])
    true_mag = par["mag_ref"][obj] + offsets[band] + scales[band] * delta
    mag_err = config.magnitude_error(true_mag, seeing_pt)
    mag = true_mag + mag_err * z_noise

    # --- final order: object, band name, t
    points = {"obj": obj, "band": band, "t": t, "mag": mag, "mag_err": mag_err}
    if nb > 1:
        rank = np.argsort(np.argsort(np.asarray(bands)))  # band index -> rank of its name
        order = _group_sort(obj * nb + rank[band], t)
        points = {k: v[order] for k, v in points.items()}
    return points, par


def _group_sort(group: np.ndarray, t: np.ndarray, stable: bool = True) -> np.ndarray:
    """Indices sorting rows by integer ``group`` then ``t`` (fast path of ``np.lexsort``).

    ``stable=True`` uses timsort, fast on nearly sorted input.
    """
    if len(t) == 0:
        return np.arange(0)
    t0 = t.min()
    width = math.ceil(t.max() - t0) + 1.0
    order = np.argsort(group * width + (t - t0), kind="stable" if stable else None)
    g, ts = group[order], t[order]
    same = g[1:] == g[:-1]
    if np.any(g[1:] < g[:-1]) or np.any(same & (ts[1:] <= ts[:-1])):
        order = np.lexsort((t, group))  # keys too close for the float composite
    return order


def _open01(u: np.ndarray) -> np.ndarray:
    """Map uniforms on [0, 1) to the open interval (0, 1) (for inverse CDFs)."""
    return u + 2.0**-54


def _id_width(stop: int) -> int:
    return max(7, len(str(max(stop - 1, 0))))


def _truth_frame(start: int, par: dict[str, np.ndarray], width: int) -> pd.DataFrame:
    n = len(par["label"])
    return pd.DataFrame({
        "object_id": _object_ids(np.arange(start, start + n), width),
        "label": par["label"],
        "period": par["period"],
        "amplitude": par["amplitude"],
        "mag_ref": par["mag_ref"],
        "tau": par["tau"],
    }, columns=list(_TRUTH_COLUMNS))


def simulate_lightcurves(
    n: int,
    seed: int = 0,
    *,
    start: int = 0,
    bands: Sequence[str] = ("V",),
    classes: Sequence[str] | None = None,
    config: SurveyConfig | None = None,
    id_width: int | None = None,
) -> Simulation:
    """Simulate the light curves of objects ``start`` .. ``start + n - 1``.

    Object ``i`` always gets the same light curve for a given ``seed``,
    ``bands``, ``classes`` and ``config``, whatever ``start`` and ``n``.

    Parameters
    ----------
    n : int
        Number of objects (>= 0).
    seed : int, default 0
        Non-negative seed of the whole survey.
    start : int, default 0
        Index of the first object.
    bands : sequence of str or str, default ('V',)
        Passbands, names from :data:`BANDS` (or a comma-separated string).
        Exposures cycle through them; each band has its own magnitude offset
        and amplitude scale.
    classes : sequence of str, optional
        Classes to draw from with equal probability; default all of :data:`CLASSES`.
    config : SurveyConfig, optional
        Cadence and error model; default :class:`SurveyConfig()`.
    id_width : int, optional
        Digits of the zero-padded object ids (``sim0000042``); default enough
        for ``start + n`` objects and at least 7.

    Returns
    -------
    Simulation
        ``lightcurves`` (object_id, band, t [MJD days], mag [mag], mag_err [mag];
        sorted by object_id, band, t) and ``truth`` (one row per object).

    Raises
    ------
    ConfigError
        Negative ``n``/``start``/``seed``, unknown band or class.

    Examples
    --------
    >>> sim = simulate_lightcurves(3, seed=1)
    >>> sim.truth["object_id"].tolist()
    ['sim0000000', 'sim0000001', 'sim0000002']
    >>> bool((sim.lightcurves["mag_err"] > 0).all())
    True
    """
    bands, classes = _check_common(seed, bands, classes)
    if n < 0 or start < 0:
        raise ConfigError(f"n and start must be >= 0, got n={n}, start={start}")
    config = config or SurveyConfig()
    width = id_width or _id_width(start + n)
    points, par = _simulate_chunk(start, n, _philox_key(seed), bands, classes, config)
    ids = _object_ids(np.arange(start, start + n), width)
    frame = pd.DataFrame({
        "object_id": ids[points["obj"]] if n else np.array([], dtype=object),
        "band": np.asarray(bands, dtype=object)[points["band"]],
        "t": points["t"],
        "mag": points["mag"],
        "mag_err": points["mag_err"],
    }, columns=list(_SCHEMA.names))
    return Simulation(frame, _truth_frame(start, par, width))


def _arrow_chunk(start: int, points: dict[str, np.ndarray], bands: tuple[str, ...],
                 width: int, n: int) -> pa.Table:
    ids = pa.array(_object_ids(np.arange(start, start + n), width).tolist(), pa.string())
    oid = pa.DictionaryArray.from_arrays(pa.array(points["obj"].astype(np.int32)), ids)
    band = pa.DictionaryArray.from_arrays(pa.array(points["band"].astype(np.int32)),
                                          pa.array(list(bands), pa.string()))
    return pa.table({
        "object_id": oid.cast(pa.string()),
        "band": band.cast(pa.string()),
        "t": points["t"],
        "mag": points["mag"],
        "mag_err": points["mag_err"],
    })


def simulate_survey(
    n: int,
    out: str | os.PathLike[str],
    seed: int = 0,
    *,
    chunk_objects: int = 2000,
    bands: Sequence[str] = ("V",),
    classes: Sequence[str] | None = None,
    config: SurveyConfig | None = None,
) -> SimulatedSurvey:
    """Simulate ``n`` light curves and write them to ``out`` in chunks.

    Memory stays flat in ``n``: objects are simulated ``chunk_objects`` at a
    time and streamed to Parquet (one or more row groups per chunk) and CSV.
    The output does not depend on ``chunk_objects``.

    Parameters
    ----------
    n : int
        Number of objects (>= 1).
    out : path-like
        Output directory; receives ``lightcurves.parquet`` (lcpipe long
        format: object_id, band, t [MJD days], mag [mag], mag_err [mag], sorted
        by object_id, band, t; the simulation parameters are stored as JSON
        under the file-metadata key :data:`METADATA_KEY`) and ``labels.csv``
        (object_id, label, period [days], amplitude [mag], mag_ref [mag], tau
        [days]; see :class:`Simulation`). Both are written atomically.
    seed : int, default 0
        Non-negative seed.
    chunk_objects : int, default 2000
        Objects per chunk (about 400,000 rows and 150 MB of working memory with
        the default cadence).
    bands, classes, config
        As for :func:`simulate_lightcurves`.

    Returns
    -------
    SimulatedSurvey
        Paths of the two files and the numbers of objects and rows written.

    Raises
    ------
    ConfigError
        Bad ``n``, ``chunk_objects``, seed, band or class.
    """
    bands, classes = _check_common(seed, bands, classes)
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    if chunk_objects < 1:
        raise ConfigError(f"chunk_objects must be >= 1, got {chunk_objects}")
    config = config or SurveyConfig()
    out = Path(out)
    lc_path, labels_path = out / "lightcurves.parquet", out / "labels.csv"
    width = _id_width(n)
    key = _philox_key(seed)
    metadata = {METADATA_KEY: {
        "version": __version__, "n": n, "seed": int(seed), "bands": list(bands),
        "classes": list(classes), "config": asdict(config),
    }}
    with (ParquetStreamWriter(lc_path, _SCHEMA, metadata=metadata) as writer,
          atomic_path(labels_path) as tmp_labels,
          open(tmp_labels, "w", newline="") as fh):
        csv.writer(fh).writerow(_TRUTH_COLUMNS)
        for lo in range(0, n, chunk_objects):
            m = min(chunk_objects, n - lo)
            points, par = _simulate_chunk(lo, m, key, bands, classes, config)
            writer.write(_arrow_chunk(lo, points, bands, width, m))
            _truth_frame(lo, par, width).to_csv(fh, header=False, index=False,
                                                float_format="%.10g")
    return SimulatedSurvey(lc_path, labels_path, n, writer.n_rows)
