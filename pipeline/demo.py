"""The embedded demo data: a stratified sample of real CRTS light curves and their labels."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["sample_paths"]


def sample_paths() -> dict[str, Path]:
    """Paths of the bundled CRTS sample (``lightcurves`` Parquet and ``labels`` CSV).

    See ``pipeline/data/crts_sample/README.md`` for provenance and licence;
    ``lcpipe demo`` runs the train flow on it.
    """
    base = Path(str(resources.files("pipeline") / "data" / "crts_sample"))
    return {"lightcurves": base / "lightcurves.parquet", "labels": base / "labels.csv"}
