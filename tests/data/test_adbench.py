"""oddeye.data.adbench: npz validation, discovery, grouping; every shared ADBench file loads."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from oddeye.data.adbench import ADBENCH_GROUPS, dataset_group, find_npz, load_npz
from oddeye.errors import DataError
from tests.conftest import shared_path


def _npz(path: Path, **arrays) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def test_load_converts_dtypes(tmp_path):
    X = np.arange(12, dtype=np.int16).reshape(4, 3)
    y = np.array([0, 1, 0, 0], np.int32)
    Xo, yo = load_npz(_npz(tmp_path / "a.npz", X=X, y=y))
    assert Xo.dtype == np.float64 and Xo.shape == (4, 3)
    assert yo.dtype == np.int64 and yo.tolist() == [0, 1, 0, 0]
    np.testing.assert_array_equal(Xo, X)


def test_column_labels_and_float_labels(tmp_path):
    X = np.zeros((3, 2))
    _, y = load_npz(_npz(tmp_path / "a.npz", X=X, y=np.array([[0.0], [1.0], [1.0]])))
    assert y.tolist() == [0, 1, 1] and y.dtype == np.int64


def test_missing_key(tmp_path):
    p = _npz(tmp_path / "a.npz", X=np.zeros((3, 2)), labels=np.zeros(3))
    with pytest.raises(DataError) as err:
        load_npz(p)
    assert str(p) in str(err.value) and "y" in str(err.value) and "labels" in str(err.value)


def test_labels_must_be_binary(tmp_path):
    p = _npz(tmp_path / "a.npz", X=np.zeros((3, 2)), y=np.array([0, 1, 2]))
    with pytest.raises(DataError, match=r"a\.npz.*binary.*2"):
        load_npz(p)


def test_length_mismatch(tmp_path):
    p = _npz(tmp_path / "a.npz", X=np.zeros((3, 2)), y=np.array([0, 1]))
    with pytest.raises(DataError, match=r"a\.npz: X has 3 rows but y has 2"):
        load_npz(p)


def test_nonfinite_columns_are_counted(tmp_path):
    X = np.zeros((4, 5))
    X[0, 1] = np.nan
    X[2, 3] = np.inf
    X[3, 3] = -np.inf
    p = _npz(tmp_path / "a.npz", X=X, y=np.zeros(4, int))
    with pytest.raises(DataError) as err:
        load_npz(p)
    msg = str(err.value)
    assert str(p) in msg and "2 of 5 columns" in msg and "1, 3" in msg


def test_bad_shapes(tmp_path):
    with pytest.raises(DataError, match="2-D"):
        load_npz(_npz(tmp_path / "a.npz", X=np.zeros(3), y=np.zeros(3, int)))
    with pytest.raises(DataError, match="1-D"):
        load_npz(_npz(tmp_path / "b.npz", X=np.zeros((3, 2)), y=np.zeros((3, 2), int)))
    with pytest.raises(DataError, match="empty"):
        load_npz(_npz(tmp_path / "c.npz", X=np.zeros((0, 2)), y=np.zeros(0, int)))


def test_object_arrays_refused_without_pickle(tmp_path):
    X = np.array([[1, "a"], [2, "b"]], dtype=object)
    p = _npz(tmp_path / "obj.npz", X=X, y=np.array([0, 1]))
    with pytest.raises(DataError, match=r"obj\.npz.*allow_pickle=False"):
        load_npz(p)


def test_not_an_npz(tmp_path):
    p = tmp_path / "bad.npz"
    p.write_bytes(b"garbage" * 10)
    with pytest.raises(DataError, match=r"bad\.npz: not an \.npz"):
        load_npz(p)
    with pytest.raises(DataError, match="not found"):
        load_npz(tmp_path / "missing.npz")


def test_find_npz_and_groups(tmp_path):
    for rel in ["Classical/2_b.npz", "Classical/10_a.npz", "CV_by_ResNet18/x.npz",
                "NLP_by_BERT/sub/t.npz", ".trash/z.npz", "Classical/.tmp.npz"]:
        _npz(tmp_path / rel, X=np.zeros((2, 1)), y=np.array([0, 1]))
    (tmp_path / "Classical" / "readme.txt").write_text("x")
    found = [p.relative_to(tmp_path).as_posix() for p in find_npz(tmp_path)]
    assert found == ["CV_by_ResNet18/x.npz", "Classical/10_a.npz", "Classical/2_b.npz",
                     "NLP_by_BERT/sub/t.npz"]
    assert [dataset_group(p) for p in find_npz(tmp_path)] == [
        "CV_by_ResNet18", "Classical", "Classical", "NLP_by_BERT"]
    assert dataset_group(tmp_path / "other" / "q.npz") == "other"
    with pytest.raises(DataError, match="not found"):
        find_npz(tmp_path / "missing")


@pytest.mark.shared
def test_all_shared_adbench_files_load():
    root = shared_path("adbench")
    start = time.perf_counter()
    files = find_npz(root)
    assert len(files) == 65
    groups = {}
    for f in files:
        X, y = load_npz(f)
        assert X.dtype == np.float64 and X.ndim == 2 and y.shape == (X.shape[0],)
        assert 0 < y.sum() < len(y), f  # both classes present
        groups[dataset_group(f)] = groups.get(dataset_group(f), 0) + 1
    assert groups == {"Classical": 43, "CV_by_ResNet18": 21, "NLP_by_BERT": 1}
    assert set(groups) == set(ADBENCH_GROUPS)
    # ~1.5 s on an idle 2-core machine; the bound only catches a pathological slowdown
    assert time.perf_counter() - start < 30.0
