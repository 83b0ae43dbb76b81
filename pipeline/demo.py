"""The embedded demo: the bundled CRTS sample through the pipeline."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["sample_paths", "run_demo"]


def sample_paths() -> dict[str, Path]:
    """Paths of the bundled CRTS sample (``lightcurves`` Parquet and ``labels`` CSV)."""
    base = Path(str(resources.files("pipeline") / "data" / "crts_sample"))
    return {"lightcurves": base / "lightcurves.parquet", "labels": base / "labels.csv"}


def run_demo(outdir: str | os.PathLike[str]) -> dict[str, Any]:
    """Validate the bundled sample and compute its dm-dt images.

    Parameters
    ----------
    outdir : path-like
        Receives ``validated/`` (clean table, quarantine, summary) and ``dmdt.parquet``.

    Returns
    -------
    dict
        ``validate`` and ``dmdt`` summaries.
    """
    from .dmdt import dmdt_file
    from .validate import validate_file

    out = Path(outdir)
    paths = sample_paths()
    v = validate_file(paths["lightcurves"], out / "validated")
    d = dmdt_file(out / "validated" / "lightcurves.parquet", out / "dmdt.parquet")
    return {"validate": v, "dmdt": d}
