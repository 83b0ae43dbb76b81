"""Classifiers for lcpipe feature tables and images, and their shared evaluation.

TensorFlow is never imported here: the CNN lives in ``models.cnn`` and is
imported explicitly by whoever needs it.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public names -> submodule; imported on first use (scikit-learn alone takes ~1.5 s, and
#: a command that only reads a manifest or a bundle's metadata should not pay for it).
_LAZY = {
    **dict.fromkeys(("OOFResult", "SampleCopies", "confusion_rows", "cross_validate",
                     "format_report", "metric_rows", "metrics_report", "stratified_folds"),
                    "evaluation"),
    **dict.fromkeys(("LightCurveForest", "cross_validate_forest", "load_forest",
                     "permutation_importances", "save_forest"), "forest"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LightCurveForest",
    "OOFResult",
    "cross_validate_forest",
    "SampleCopies",
    "confusion_rows",
    "cross_validate",
    "metric_rows",
    "format_report",
    "load_forest",
    "metrics_report",
    "permutation_importances",
    "save_forest",
    "stratified_folds",
]
