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


@pytest.mark.parametrize("method, params, match", [
    ("deepsad", dict(eta=float("nan")), r"eta must be a finite number > 0, got nan"),
    ("deepsad", dict(batch_size=0), r"batch_size must be an integer >= 2, got 0"),
    ("deepsad", dict(hidden=(10, 0)), r"hidden must be a sequence of layer widths >= 1"),
    ("deepsad", dict(pretrain="yes"), r"pretrain must be true or false"),
    ("devnet", dict(lr=-1.0), r"lr must be a finite number > 0, got -1.0"),
    ("devnet", dict(random_state=-1), r"random_state must be None, an integer in \[0, 2\*\*32\)"),
    ("prenet", dict(n_refs=0), r"n_refs must be an integer >= 1, got 0"),
    ("prenet", dict(batch_size=3), r"batch_size must be an integer >= 4, got 3"),
    ("feawad", dict(ae_steps=-1), r"ae_steps must be an integer >= 0, got -1"),
    ("feawad", dict(rec_loss=1), r"rec_loss must be true or false"),
    ("knn", dict(n_neighbors=0), r"n_neighbors must be an integer >= 1, got 0"),
    ("iforest", dict(n_estimators=2.5), r"n_estimators must be an integer >= 1"),
    ("knn", dict(contamination=0.5), r"contamination must be a finite number in \(0, 0.5\)"),
])
def test_bad_hyperparameters_are_named_before_the_data_is_read(method, params, match):
    """A value that used to fit a NaN model (eta=nan, n_refs=0) or fail deep in torch
    (batch_size=0, lr=-1) is a DataError naming it, before X is looked at (here X holds NaN)."""
    X = np.full((20, 3), np.nan)
    y = np.r_[np.zeros(18, int), np.ones(2, int)]
    with pytest.raises(DataError, match=match):
        create_detector(method, **params).fit(X, y)


def test_references_compute_in_float64_and_torch_detectors_refuse_what_float32_cannot_hold():
    """kNN / Isolation Forest keep the features' precision (rows 1 apart at an offset of 1e8
    stay apart); a torch detector refuses values float32 cannot hold instead of calling them
    NaN or infinite."""
    X = 1e8 + np.arange(60, dtype=np.float64)[:, None] * np.ones((1, 2))
    knn = create_detector("knn", n_neighbors=1).fit(X)
    assert (knn.decision_scores_ > 0).all()
    y = np.r_[np.zeros(55, int), np.ones(5, int)]
    with pytest.raises(DataError, match=r"X: values up to 1e\+39 exceed float32's range"):
        create_detector("devnet", **FAST["devnet"]).fit(np.full((60, 2), 1e39) * (X > 0), y)


def test_deepsad_capped_epochs_with_few_unlabelled_samples_fit():
    """Labelled anomalies filling an epoch's cap left fewer unlabelled samples than a batch to
    draw without replacement: a raw numpy ValueError."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1300, 4))
    y = np.zeros(1300, int)
    y[:1200] = 1
    det = DeepSAD(ae_epochs=1, epochs=1, random_state=0).fit(X, y)
    assert np.isfinite(det.decision_function(X[:5])).all()
