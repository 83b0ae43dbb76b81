"""Seeded synthetic light curves for the feature tests (CRTS-like cadence)."""

from __future__ import annotations

import numpy as np


def crts_times(rng: np.random.Generator, n_visits: int = 75, baseline: float = 2900.0,
               per_visit: int = 4) -> np.ndarray:
    """Visit times as CRTS takes them: seasons, nights, ``per_visit`` exposures in ~30 min."""
    nights = np.arange(int(baseline))
    nights = nights[(nights % 365) < 240]  # observing season of ~8 months a year
    nights = np.sort(rng.choice(nights, size=n_visits, replace=False)).astype(float)
    start = 53500.0 + nights + rng.uniform(0.1, 0.4, n_visits)  # time of night varies
    t = (start[:, None] + np.arange(per_visit)[None, :] * 0.0069).ravel()
    return np.sort(t + rng.uniform(0.0, 0.001, t.size))


def sinusoid(t: np.ndarray, period: float, amp: float, rng: np.random.Generator,
             noise: float = 0.05, mag0: float = 15.0) -> tuple[np.ndarray, np.ndarray]:
    """Sinusoid of semi-amplitude ``amp`` with Gaussian noise; returns (m, sigma)."""
    m = mag0 + amp * np.sin(2 * np.pi * t / period + 0.7) + rng.normal(0.0, noise, t.size)
    return m, np.full(t.size, noise)


def eclipsing(t: np.ndarray, period: float, depth1: float, depth2: float,
              rng: np.random.Generator, width: float = 0.08, noise: float = 0.02,
              mag0: float = 14.0) -> tuple[np.ndarray, np.ndarray]:
    """Detached binary: Gaussian eclipses of depths ``depth1`` (phase 0) and ``depth2`` (0.5)."""
    ph = np.mod(t / period, 1.0)
    d1 = np.minimum(ph, 1.0 - ph)
    d2 = np.abs(ph - 0.5)
    m = (mag0 + depth1 * np.exp(-0.5 * (d1 / width) ** 2)
         + depth2 * np.exp(-0.5 * (d2 / width) ** 2) + rng.normal(0.0, noise, t.size))
    return m, np.full(t.size, noise)
