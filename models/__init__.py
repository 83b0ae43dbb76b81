"""Classifiers for lcpipe feature tables and images, and their shared evaluation.

TensorFlow is never imported here: the CNN lives in ``models.cnn`` and is
imported explicitly by whoever needs it.
"""

from __future__ import annotations

from .evaluation import (
    OOFResult,
    cross_validate_oof,
    format_report,
    metrics_report,
    stratified_folds,
)
from .forest import (
    LightCurveForest,
    cross_validate_forest,
    load_forest,
    permutation_importances,
    save_forest,
    training_data_hash,
)

__all__ = [
    "LightCurveForest",
    "OOFResult",
    "cross_validate_forest",
    "cross_validate_oof",
    "format_report",
    "load_forest",
    "metrics_report",
    "permutation_importances",
    "save_forest",
    "stratified_folds",
    "training_data_hash",
]
