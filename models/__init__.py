"""Classifiers for lcpipe feature tables and images, and their shared evaluation.

TensorFlow is never imported here: the CNN lives in ``models.cnn`` and is
imported explicitly by whoever needs it.
"""

from __future__ import annotations

from .evaluation import (
    OOFResult,
    SampleCopies,
    confusion_rows,
    cross_validate,
    format_report,
    metric_rows,
    metrics_report,
    stratified_folds,
)
from .forest import (
    LightCurveForest,
    cross_validate_forest,
    load_forest,
    permutation_importances,
    save_forest,
)

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
