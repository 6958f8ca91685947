"""The detectors: separable problems, the AnoOnly loss and BatchNorm, seeds, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from oddeye.errors import DataError
from oddeye.semisup import SEMISUP_METHODS, DeepSAD, DevNet, create_detector

from .conftest import FAST

DEEP = ["deepsad", "devnet", "prenet", "feawad"]


def test_registry_names():
    assert set(SEMISUP_METHODS) == {"deepsad", "devnet", "prenet", "feawad", "iforest", "knn"}
    assert all(SEMISUP_METHODS[m].uses_labels for m in DEEP)
    assert not SEMISUP_METHODS["knn"].uses_labels
    with pytest.raises(DataError, match="no AnoOnly"):
        create_detector("knn", anoonly=True)
    with pytest.raises(DataError, match="unknown"):
        create_detector("svm")


@pytest.mark.parametrize("anoonly", [False, True])
@pytest.mark.parametrize("method", DEEP)
def test_labelled_anomalies_separate_a_shifted_class(separable, method, anoonly):
    X_train, y_train, X_test, y_test = separable
    det = create_detector(method, anoonly=anoonly, random_state=0, **FAST[method])
    assert det.fit(X_train, y_train) is det
    scores = det.decision_function(X_test)
    assert scores.shape == (len(X_test),) and np.isfinite(scores).all()
    assert roc_auc_score(y_test, scores) > 0.85
    # PyOD-like contract: threshold from the training scores, predict flags about that share
    assert det.decision_scores_.shape == (len(X_train),)
    share = det.predict(X_train).mean()
    assert 0.05 <= share <= 0.15
    assert set(np.unique(det.predict(X_test))) <= {0, 1}


@pytest.mark.parametrize("method", ["iforest", "knn"])
def test_unsupervised_references_ignore_labels(separable, method):
    X_train, y_train, X_test, y_test = separable
    det = create_detector(method, random_state=0, **FAST[method]).fit(X_train, y_train)
    assert roc_auc_score(y_test, det.decision_function(X_test)) > 0.85
    again = create_detector(method, random_state=0, **FAST[method]).fit(X_train)
    np.testing.assert_allclose(again.decision_function(X_test), det.decision_function(X_test))


def _grads(module: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p)
            for p in module.parameters()]


@pytest.mark.parametrize("method", DEEP)
def test_anoonly_has_no_loss_term_on_unlabelled_samples(separable, method):
    """A batch of unlabelled samples only: exactly zero loss and zero gradient with AnoOnly,
    a positive loss with non-zero gradient in the base method."""
    X_train, y_train, _, _ = separable
    xb = torch.from_numpy(X_train[:64])
    yb = torch.zeros(64)
    for anoonly in (True, False):
        det = create_detector(method, anoonly=anoonly, random_state=0, **FAST[method])
        det.fit(X_train, y_train)
        det.net_.train()
        det.net_.zero_grad(set_to_none=True)
        loss = det._batch_loss(xb, yb)
        loss.backward()
        grad_norm = sum(float(g.abs().sum()) for g in _grads(det.net_))
        if anoonly:
            assert float(loss.detach()) == 0.0
            assert grad_norm == 0.0
        else:
            assert float(loss.detach()) > 0.0
            assert grad_norm > 0.0


@pytest.mark.parametrize("method", DEEP)
def test_anoonly_unlabelled_samples_still_act_through_batchnorm(separable, method):
    """With AnoOnly the anomaly loss depends on which unlabelled samples share the batch (batch
    statistics) although they carry no loss term of their own."""
    X_train, y_train, _, _ = separable
    extra = {"margin": 1e3} if method in ("devnet", "feawad") else {}  # keep the hinge active
    det = create_detector(method, anoonly=True, random_state=0, **FAST[method], **extra)
    det.fit(X_train, y_train)
    det.net_.train()
    anomalies = torch.from_numpy(X_train[y_train == 1][:4])
    y = torch.cat([torch.ones(4), torch.zeros(32)])
    with torch.no_grad():
        a = det._batch_loss(torch.cat([anomalies, torch.from_numpy(X_train[:32])]), y)
        b = det._batch_loss(torch.cat([anomalies, torch.from_numpy(X_train[100:132] * 3)]), y)
    assert float(a) != float(b)
    assert any(isinstance(m, nn.BatchNorm1d) for m in det.net_.modules())


def test_anoonly_puts_batchnorm_before_the_scoring_layer():
    X = np.random.default_rng(0).normal(size=(60, 5)).astype(np.float32)
    y = np.r_[np.zeros(55, int), np.ones(5, int)]
    base = DevNet(random_state=0, **FAST["devnet"]).fit(X, y)
    ao = DevNet(anoonly=True, random_state=0, **FAST["devnet"]).fit(X, y)
    assert isinstance(base.net_.bn, nn.Identity) and isinstance(ao.net_.bn, nn.BatchNorm1d)
    sad = DeepSAD(anoonly=True, random_state=0, **FAST["deepsad"]).fit(X, y)
    assert isinstance(sad.net_.encoder.bn, nn.BatchNorm1d)
    assert float(sad.net_.c.abs().sum()) == 0.0  # centre at the origin of the normalised code
    sad_base = DeepSAD(random_state=0, **FAST["deepsad"]).fit(X, y)
    assert bool((sad_base.net_.c.abs() >= 0.1).all())


@pytest.mark.parametrize("method", DEEP + ["iforest"])
def test_same_seed_same_scores(separable, method):
    X_train, y_train, X_test, _ = separable
    state = torch.get_rng_state()
    a = create_detector(method, random_state=3, **FAST[method]).fit(X_train, y_train)
    b = create_detector(method, random_state=3, **FAST[method]).fit(X_train, y_train)
    np.testing.assert_array_equal(a.decision_function(X_test), b.decision_function(X_test))
    assert torch.equal(state, torch.get_rng_state())  # the caller's torch RNG is untouched
    c = create_detector(method, random_state=4, **FAST[method]).fit(X_train, y_train)
    assert not np.array_equal(a.decision_function(X_test), c.decision_function(X_test))


def test_constructor_stores_hyperparameters_only():
    det = DevNet(anoonly=True, epochs=3)
    assert det.get_params()["anoonly"] is True and det.get_params()["epochs"] == 3
    assert not [k for k in vars(det) if k.endswith("_")]


@pytest.mark.parametrize("method", DEEP)
def test_bad_inputs_raise_data_error(method):
    X = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    y = np.r_[np.zeros(36, int), np.ones(4, int)]
    det = create_detector(method, **FAST[method])
    with pytest.raises(DataError, match="call fit"):
        det.decision_function(X)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match="NaN"):
        det.fit(bad, y)
    with pytest.raises(DataError, match="no labelled anomaly"):
        det.fit(X, np.zeros(40, int))
    with pytest.raises(DataError, match="no unlabelled"):
        det.fit(X, np.ones(40, int))
    with pytest.raises(DataError, match="0 .unlabelled. or 1"):
        det.fit(X, np.r_[np.zeros(36, int), np.full(4, 2)])
    with pytest.raises(DataError, match="labels"):
        det.fit(X, y[:10])
    with pytest.raises(DataError, match="2-D"):
        det.fit(X[0], y)
    det.fit(X, y)
    with pytest.raises(DataError, match="features"):
        det.decision_function(X[:, :3])
