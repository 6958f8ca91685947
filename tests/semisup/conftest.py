"""Small problems and fast budgets for the semi-supervised detector tests."""

from __future__ import annotations

import numpy as np
import pytest

#: Budgets small enough for tests (a few hundred milliseconds per fit), same code paths.
FAST = {
    "devnet": {"epochs": 6, "batches_per_epoch": 10, "batch_size": 128},
    "prenet": {"epochs": 6, "batches_per_epoch": 10, "batch_size": 128},
    "deepsad": {"ae_epochs": 3, "epochs": 10, "batch_size": 64, "max_batches_per_epoch": 4},
    "feawad": {"ae_steps": 20, "epochs": 6, "batches_per_epoch": 10, "batch_size": 64},
    "iforest": {"n_estimators": 50},
    "knn": {},
}


def blobs(seed: int, n_normal: int = 300, n_anom: int = 30, d: int = 8, shift: float = 2.5):
    """Normal N(0, I) and anomalies shifted along the first two axes; y = 1 for anomalies."""
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=(n_normal, d))
    anom = rng.normal(size=(n_anom, d))
    anom[:, :2] += shift
    X = np.vstack([normal, anom]).astype(np.float32)
    y = np.r_[np.zeros(n_normal, int), np.ones(n_anom, int)]
    return X, y


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These networks are tiny: one thread avoids synchronisation cost on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def separable():
    """Training set (10 labelled anomalies, the rest unlabelled and normal) and a test set."""
    X_norm, _ = blobs(0, n_normal=400, n_anom=0)
    X_anom, _ = blobs(1, n_normal=0, n_anom=10)
    X_train = np.vstack([X_norm, X_anom])
    y_train = np.r_[np.zeros(400, int), np.ones(10, int)]
    X_test, y_test = blobs(2, n_normal=200, n_anom=20)
    return X_train, y_train, X_test, y_test
