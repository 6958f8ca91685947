"""The detector contract shared by every method in ``oddeye.semisup``.

scikit-learn style: the constructor stores hyper-parameters only; ``fit(X, y)`` (``y = 1`` for a
labelled anomaly, ``0`` for unlabelled) learns and returns ``self``; ``decision_function(X)`` gives
scores where higher means more anomalous; ``predict(X)`` thresholds them with ``threshold_``, the
``1 - contamination`` quantile of the training scores ``decision_scores_`` (as PyOD does).
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator
from torch import nn

from oddeye.errors import DataError
from oddeye.methods.base import check_flag, check_number

#: ``BaseDetector.param_checks`` rule of a true/false hyper-parameter.
FLAG = "flag"
#: Rules shared by the torch detectors' training settings.
POSITIVE_INT = {"low": 1, "integer": True}
POSITIVE = {"low": 0, "low_open": True}
NON_NEGATIVE = {"low": 0}
NON_NEGATIVE_INT = {"low": 0, "integer": True}
FINITE: dict[str, Any] = {}
#: Batches hold both kinds of sample and go through BatchNorm in training: at least 2.
BATCH = {"low": 2, "integer": True}

_SCORE_CHUNK = 4096


def check_features(X, name: str = "X", n_features: int | None = None,
                   dtype: type = np.float32) -> np.ndarray:
    """``X`` as a finite ``(n, d)`` array of ``dtype`` (float32: what the torch detectors compute
    in; float64 for the scikit-learn ones); a ``DataError`` naming ``name`` otherwise, also for
    finite values that ``dtype`` cannot hold."""
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name}: cannot be read as a numeric array ({exc})") from exc
    if arr.ndim != 2:
        raise DataError(f"{name}: expected a 2-D array (samples, features), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(f"{name}: empty array of shape {arr.shape}")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise DataError(f"{name}: {bad} sample(s) contain NaN or infinite features")
    if n_features is not None and arr.shape[1] != n_features:
        raise DataError(f"{name}: has {arr.shape[1]} features, the detector was fitted on "
                        f"{n_features}")
    big = np.finfo(dtype).max
    if np.abs(arr).max() > big:
        raise DataError(f"{name}: values up to {np.abs(arr).max():.3g} exceed {np.dtype(dtype)}'s "
                        f"range ({big:.3g}) this detector computes in; standardise the features")
    return arr.astype(dtype, copy=False)


def check_labels(y, n: int, name: str = "y", require_anomaly: bool = True) -> np.ndarray:
    """``y`` as an int64 vector of 0/1 of length ``n``, with at least one 1 and one 0."""
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise DataError(f"{name}: expected {n} labels (one per sample), got shape {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError(f"{name}: contains NaN or infinite labels")
    if not np.isin(arr, (0, 1)).all():
        raise DataError(f"{name}: labels must be 0 (unlabelled) or 1 (labelled anomaly), "
                        f"got values {np.unique(arr)[:5].tolist()}")
    arr = arr.astype(np.int64)
    if require_anomaly and not (arr == 1).any():
        raise DataError(f"{name}: no labelled anomaly (no y == 1); semi-supervised detectors need "
                        f"at least one")
    if not (arr == 0).any():
        raise DataError(f"{name}: no unlabelled sample (every y == 1); the detectors learn normal "
                        f"data from the unlabelled samples")
    return arr


@contextlib.contextmanager
def torch_seed(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator inside the block without disturbing the caller's RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def resolve_seed(random_state) -> int:
    """An int seed from ``random_state`` (int, ``None`` for a fresh one, or a numpy Generator)."""
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1)[0])
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**31 - 1))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    return int(random_state)


def glorot_init(module: nn.Module) -> None:
    """Keras-style initialisation (Glorot-uniform weights, zero biases) for Linear layers."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def zero_loss(t: torch.Tensor) -> torch.Tensor:
    """An exact zero that is still connected to the graph (its gradient is zero everywhere)."""
    return t.sum() * 0.0


class BaseDetector(BaseEstimator):
    """Common ``fit``/``decision_function``/``predict`` around ``_fit`` and ``_score``.

    Subclasses implement ``_fit(X, y, rng)`` (torch is already seeded) and ``_score(X)``; set
    ``uses_labels = False`` for unsupervised references (they accept but ignore ``y``).
    """

    uses_labels: bool = True
    #: What ``X`` is computed in (the torch detectors: float32; they expect standardised
    #: features, as the protocol gives them).
    dtype: type = np.float32
    #: Value checks of the subclass's hyper-parameters: name -> ``check_number`` keywords, or
    #: ``FLAG`` for a true/false one; run by ``fit`` before any data is touched.
    param_checks: dict[str, Any] = {}

    # -- subclass hooks -------------------------------------------------------------------------
    def _fit(self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def _score(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _training_scores(self, X: np.ndarray) -> np.ndarray:
        """Scores of the training samples themselves (``decision_scores_``)."""
        return self._score(X)

    def _check_params(self) -> None:
        """Validate hyper-parameters (``param_checks``, contamination, random_state): a
        ``DataError`` naming the first bad one; subclasses extend it."""
        check_number("contamination", getattr(self, "contamination", 0.1), low=0, high=0.5,
                     low_open=True, high_open=True)
        rs = getattr(self, "random_state", None)
        if rs is not None and not isinstance(rs, (np.random.Generator, np.random.RandomState)):
            if isinstance(rs, bool) or not isinstance(rs, numbers.Integral) \
                    or not 0 <= rs < 2**32:
                raise DataError(f"random_state must be None, an integer in [0, 2**32) or a "
                                f"numpy Generator, got {rs!r}")
        for name, rule in self.param_checks.items():
            value = getattr(self, name)
            if rule == FLAG:
                check_flag(name, value)
            else:
                check_number(name, value, **rule)

    # -- public API ------------------------------------------------------------------------------
    def fit(self, X, y=None):
        """Learn from ``X`` and ``y`` (1 = labelled anomaly, 0 = unlabelled); returns self."""
        self._check_params()
        X = check_features(X, "X", dtype=self.dtype)
        if y is None:
            if self.uses_labels:
                raise DataError("y: labels are required (1 = labelled anomaly, 0 = unlabelled)")
            y = np.zeros(X.shape[0], dtype=np.int64)
        else:
            y = check_labels(y, X.shape[0], "y", require_anomaly=self.uses_labels)
        seed = resolve_seed(getattr(self, "random_state", None))
        rng = np.random.default_rng(seed)
        self.n_features_in_ = int(X.shape[1])
        with torch_seed(seed):
            self._fit(X, y, rng)
        self.decision_scores_ = self._training_scores(X)
        q = 1.0 - float(getattr(self, "contamination", 0.1))
        self.threshold_ = float(np.quantile(self.decision_scores_, q))
        self.labels_ = (self.decision_scores_ > self.threshold_).astype(np.int64)
        return self

    def decision_function(self, X) -> np.ndarray:
        """Anomaly scores of ``X`` (higher = more anomalous), float64 ``(n,)``."""
        if not hasattr(self, "n_features_in_"):
            raise DataError(f"{type(self).__name__}: call fit(X, y) before scoring")
        X = check_features(X, "X", self.n_features_in_, self.dtype)
        return self._score(X)

    def predict(self, X) -> np.ndarray:
        """Binary labels (1 = anomaly) of ``X`` from ``threshold_``."""
        return (self.decision_function(X) > self.threshold_).astype(np.int64)


class TorchDetector(BaseDetector):
    """A detector whose scoring network is ``self.net_`` (an ``nn.Module`` returning scores)."""

    def _forward_scores(self, xb: torch.Tensor) -> torch.Tensor:
        """Scores of a batch in eval mode; subclasses override when scoring is not ``net_(x)``."""
        return self.net_(xb)

    def _score(self, X: np.ndarray) -> np.ndarray:
        net: nn.Module = self.net_
        was_training = net.training
        net.eval()
        out = []
        with torch.no_grad():
            xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
            for start in range(0, xt.shape[0], _SCORE_CHUNK):
                out.append(self._forward_scores(xt[start:start + _SCORE_CHUNK]).reshape(-1))
        net.train(was_training)
        return torch.cat(out).double().numpy()

    def _batch_loss(self, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """The method's training data loss on a batch (network in train mode); for tests."""
        raise NotImplementedError


def sample_indices(rng: np.random.Generator, pool: np.ndarray, k: int) -> np.ndarray:
    """``k`` indices drawn from ``pool``: without replacement when it is large enough."""
    return rng.choice(pool, size=k, replace=len(pool) < k)


def balanced_batches(rng: np.random.Generator, idx_u: np.ndarray, idx_a: np.ndarray,
                     batch_size: int, steps: int) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """DevNet's sampler (FEAWAD uses it too): ``steps`` batches of which half are labelled
    anomalies, drawn with replacement so a handful of them count as much as the unlabelled
    mass; yields (row indices, labels 0 then 1)."""
    half = batch_size // 2
    yb = torch.cat([torch.zeros(batch_size - half), torch.ones(half)])
    for _ in range(steps):
        yield np.concatenate([rng.choice(idx_u, batch_size - half), rng.choice(idx_a, half)]), yb
