"""The ADBench protocol: split, labelling, contamination, scaling, metrics and bad data sets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from oddeye.errors import DataError
from oddeye.semisup.protocol import (
    apply_contamination,
    check_dataset,
    make_split,
    run_split,
    score_metrics,
    stratified_subsample,
)

from .conftest import FAST, blobs


def test_split_labels_ten_percent_of_training_anomalies():
    X, y = blobs(0, n_normal=900, n_anom=100)
    s = make_split(X, y, seed=0)
    assert len(s.y_test) == 300 and s.y_test.sum() == 30  # stratified 30 %
    assert len(s.y_train) == 700 and s.y_train.sum() == math.ceil(0.1 * 70) == 7
    # the other 63 training anomalies stay in the unlabelled part (natural contamination)
    assert s.info["unlabeled_anomaly_share"] == pytest.approx(63 / 693)
    np.testing.assert_allclose(s.X_train.mean(0), 0, atol=1e-5)  # scaler fitted on train
    assert abs(float(s.X_test.mean())) > 1e-4
    assert s.X_train.dtype == np.float32


def test_at_least_one_labelled_anomaly_and_seeds_differ():
    X, y = blobs(0, n_normal=200, n_anom=4)
    s0 = make_split(X, y, seed=0)
    assert s0.y_train.sum() == 1
    s1 = make_split(X, y, seed=1)
    assert not np.array_equal(s0.X_test, s1.X_test)
    again = make_split(X, y, seed=0)
    np.testing.assert_array_equal(s0.X_train, again.X_train)


@pytest.mark.parametrize("share", [0.0, 0.05, 0.10])
def test_contamination_sets_the_unlabelled_anomaly_share(share):
    X, y = blobs(0, n_normal=900, n_anom=100)  # natural share about 9 %
    s = make_split(X, y, seed=0, contamination=share)
    assert s.info["unlabeled_anomaly_share"] == pytest.approx(share, abs=0.003)
    base = make_split(X, y, seed=0)
    np.testing.assert_array_equal(base.y_test, s.y_test)  # test split unchanged
    assert s.y_train.sum() == base.y_train.sum()  # same labelled anomalies


def test_apply_contamination_drops_normals_when_anomalies_are_few():
    rng = np.random.default_rng(0)
    normals, anoms = apply_contamination(np.arange(1000), np.arange(1000, 1010), 0.10, rng)
    assert len(anoms) == 10 and len(normals) == 90
    normals, anoms = apply_contamination(np.arange(100), np.arange(100, 150), 0.10, rng)
    assert len(normals) == 100 and len(anoms) == 11
    with pytest.raises(DataError, match="no unlabelled anomaly"):
        apply_contamination(np.arange(10), np.arange(0), 0.05, rng)


def test_large_sets_are_subsampled_stratified():
    y = np.r_[np.zeros(19000, int), np.ones(1000, int)]
    keep = stratified_subsample(y, 10_000, np.random.default_rng(0))
    assert len(keep) == 10_000 and y[keep].sum() == 500
    assert len(np.unique(keep)) == 10_000


def test_bad_data_sets_raise_data_error():
    X, y = blobs(0, n_normal=50, n_anom=5)
    bad = X.copy()
    bad[7, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        make_split(bad, y, 0, name="nan.npz")
    with pytest.raises(DataError, match="one class only"):
        make_split(X, np.zeros_like(y), 0, name="one.npz")
    with pytest.raises(DataError, match="one class only"):
        check_dataset(X, np.ones_like(y))
    with pytest.raises(DataError, match="labelled"):
        make_split(X, y, 0, labeled=0.0)
    with pytest.raises(DataError, match="at least two"):
        make_split(X, np.r_[np.zeros(54, int), 1], 0)


def test_run_split_reports_metrics_and_time():
    X, y = blobs(0, n_normal=300, n_anom=30)
    res = run_split(make_split(X, y, 0), "devnet", anoonly=True, seed=0, **FAST["devnet"])
    assert res["auroc"] > 0.8 and 0 < res["aupr"] <= 1 and res["fit_seconds"] > 0
    assert score_metrics(np.array([0, 0, 1]), np.array([0.1, 0.2, 0.9])) == (1.0, 1.0)
    with pytest.raises(DataError, match="NaN"):
        score_metrics(np.array([0, 1]), np.array([0.1, np.nan]))
