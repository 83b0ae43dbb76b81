"""Fixtures shared by the model tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def planted_model():
    """mahabal2017 trained where only pixel (12, 15) tells the classes apart: (model, X, y)."""
    pytest.importorskip("keras")
    from models.cnn import DmDtCNN

    rng = np.random.default_rng(3)
    n = 128
    X = rng.random((n, 22, 24, 1)).astype(np.float32) * 0.5
    y = np.repeat(np.array(["a", "b"]), n // 2)
    X[y == "b", 12, 15, 0] += 1.0
    clf = DmDtCNN(arch="mahabal2017", epochs=10, batch_size=16, learning_rate=3e-3,
                  patience=10, random_state=0).fit(X, y, input_meta={"preset": "test",
                                                                     "norm": "raw"})
    return clf, X, y
