"""lcpipe core: data contract, validation, dm-dt images, robust PCA, reports, CLI.

Public names are imported lazily so that ``lcpipe --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__

_EXPORTS = {
    "ColumnMap": ".contract",
    "read_table": ".contract",
    "iter_object_chunks": ".contract",
    "CleaningConfig": ".validate",
    "clean_frame": ".validate",
    "validate_file": ".validate",
    "LightCurves": ".lightcurves",
    "iter_lightcurves": ".lightcurves",
    "read_lightcurves": ".lightcurves",
    "read_labels": ".labels",
    "PAPER_CLASSES": ".labels",
    "DmDtBins": ".dmdt",
    "DmDtImages": ".dmdt",
    "get_bins": ".dmdt",
    "compute_dmdt": ".dmdt",
    "dmdt_file": ".dmdt",
    "read_dmdt": ".dmdt",
    "AltProj": ".rpca",
    "PCP": ".rpca",
    "DmDtRPCA": ".rpca_dmdt",
    "NearestSubspaceClassifier": ".rpca_dmdt",
    "rpca_dmdt_file": ".rpca_dmdt",
    "ingest": ".chunks",
    "read_report": ".reports",
    "list_runs": ".reports",
    "comparison_markdown": ".reports",
    "select_classes": ".labels",
    "join_labels": ".labels",
    "data_hash": ".hashing",
    "LcpipeError": ".errors",
    "InputError": ".errors",
    "ConfigError": ".errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
