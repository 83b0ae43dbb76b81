"""Light-curve features for the random-forest baseline.

Per band: 38 statistics from the light-curve package and 26 periodic
features (period search, periodogram peaks, Fourier decomposition,
doubled-period test); for multi-band input also a joint multi-band period and
colours. ``docs/features.md`` lists every feature.
"""

from __future__ import annotations

from .api import (
    FEATURE_SET_VERSION,
    METADATA_KEY,
    default_extractor,
    extract_features,
    extract_features_file,
    feature_set_version,
    read_features,
)
from .base import FeatureGroup, check_lightcurve
from .colour import ColourFeatures, MultiBandPeriodFeatures
from .extractor import Extractor
from .fourier import DoublePeriodTest, FourierFit, double_period_test, fourier_fit
from .lightcurve import LightCurveFeatures
from .period import (
    PeriodResult,
    PeriodSearchConfig,
    find_period,
    find_period_multiband,
    gls_power,
    log10_fap_baluev,
)
from .periodic import PeriodicFeatures

__all__ = [
    "FEATURE_SET_VERSION",
    "METADATA_KEY",
    "ColourFeatures",
    "DoublePeriodTest",
    "Extractor",
    "FeatureGroup",
    "FourierFit",
    "LightCurveFeatures",
    "MultiBandPeriodFeatures",
    "PeriodResult",
    "PeriodSearchConfig",
    "PeriodicFeatures",
    "check_lightcurve",
    "default_extractor",
    "double_period_test",
    "extract_features",
    "extract_features_file",
    "feature_set_version",
    "find_period",
    "find_period_multiband",
    "fourier_fit",
    "gls_power",
    "log10_fap_baluev",
    "read_features",
]
