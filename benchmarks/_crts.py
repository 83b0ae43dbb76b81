"""What the CRTS evaluation scripts share: the cached feature table."""

from __future__ import annotations

from pathlib import Path


def cached_features(data: Path, cache: Path, jobs: int) -> Path:
    """The CRTS feature table of the current feature set, computed once per version.

    Parameters
    ----------
    data : Path
        Folder of ``lightcurves.parquet`` (the shared CRTS set).
    cache : Path
        Cache folder; the table is ``crts_features_v<FEATURE_SET_VERSION>.parquet`` there.
    jobs : int
        Processes for the extraction, if it runs.

    Returns
    -------
    Path
        The feature table.
    """
    from features import FEATURE_SET_VERSION, extract_features_file
    from pipeline.contract import ColumnMap

    path = Path(cache) / f"crts_features_v{FEATURE_SET_VERSION}.parquet"
    if not path.exists():
        print(f"computing light-curve features -> {path} ...", flush=True)
        extract_features_file(Path(data) / "lightcurves.parquet", path,
                              ColumnMap.from_spec("crts"), n_jobs=jobs)
    return path
