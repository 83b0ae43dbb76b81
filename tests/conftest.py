"""Shared fixtures: seeded generators, the real data in ../shared when present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.cnn import tensorflow_environment

# CNN tests import keras directly: give TensorFlow lcpipe's settings (threads, oneDNN) first
tensorflow_environment()

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CRTS = SHARED / "crts"
ZTF = SHARED / "ztf_alerce"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def crts_dir() -> Path:
    if not (CRTS / "lightcurves.parquet").exists():
        pytest.skip("real CRTS data (../shared/data/crts) not available")
    return CRTS


@pytest.fixture(scope="session")
def ztf_dir() -> Path:
    if not (ZTF / "lightcurves.parquet").exists():
        pytest.skip("real ZTF data (../shared/data/ztf_alerce) not available")
    return ZTF
