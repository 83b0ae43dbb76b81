"""Helpers shared by tests (import as ``tests.helpers``)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def make_frame(rng: np.random.Generator, n_obj: int = 5, n_min: int = 12, n_max: int = 60,
               bands: tuple[str, ...] = ("r",)) -> pd.DataFrame:
    """Random clean-looking long table (unsorted within objects)."""
    rows = []
    for k in range(n_obj):
        for b in bands:
            n = int(rng.integers(n_min, n_max))
            t = 55000 + np.sort(rng.uniform(0, 2000, n))
            rows.append(pd.DataFrame({
                "object_id": f"obj{k:03d}", "band": b, "t": rng.permutation(t),
                "mag": rng.normal(16, 0.7, n), "mag_err": rng.uniform(0.01, 0.2, n)}))
    return pd.concat(rows, ignore_index=True)
