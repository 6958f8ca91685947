"""Unsupervised references in the same contract: Isolation Forest and k-nearest-neighbour distance.

They accept ``y`` and ignore it, so a table shows what the few labelled anomalies buy.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import NearestNeighbors

from oddeye.errors import DataError
from oddeye.semisup.base import POSITIVE_INT, BaseDetector


class IForestDetector(BaseDetector):
    """scikit-learn's Isolation Forest; the score is minus ``score_samples`` (higher = worse)."""

    uses_labels = False
    dtype = np.float64
    param_checks = {"n_estimators": POSITIVE_INT}

    def __init__(self, n_estimators: int = 100, max_samples: str | int = "auto",
                 contamination: float = 0.1, random_state: int | None = None):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.contamination = contamination
        self.random_state = random_state

    def _fit(self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> None:
        self.model_ = IsolationForest(n_estimators=self.n_estimators, max_samples=self.max_samples,
                                      random_state=int(rng.integers(0, 2**31 - 1))).fit(X)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return -self.model_.score_samples(X).astype(np.float64)


class KNNDetector(BaseDetector):
    """Distance to the ``n_neighbors``-th nearest training sample (PyOD's "largest" kNN)."""

    uses_labels = False
    dtype = np.float64  # distances in the features' own precision
    param_checks = {"n_neighbors": POSITIVE_INT}

    def __init__(self, n_neighbors: int = 5, contamination: float = 0.1,
                 random_state: int | None = None):
        self.n_neighbors = n_neighbors
        self.contamination = contamination
        self.random_state = random_state

    def _fit(self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> None:
        self.k_ = min(int(self.n_neighbors), X.shape[0] - 1)
        if self.k_ < 1:
            raise DataError("X: kNN needs at least two training samples")
        self.nn_ = NearestNeighbors(n_neighbors=self.k_ + 1).fit(X)

    def _training_scores(self, X: np.ndarray) -> np.ndarray:
        # a training sample is its own nearest neighbour: skip that zero distance
        return self.nn_.kneighbors(X, self.k_ + 1)[0][:, -1].astype(np.float64)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self.nn_.kneighbors(X, self.k_)[0][:, -1].astype(np.float64)
