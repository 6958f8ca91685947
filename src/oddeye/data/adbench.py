"""Read ADBench tabular / embedding data sets stored as ``.npz`` files with arrays ``X`` and ``y``.

Files are opened with ``allow_pickle=False`` (no code can run from a data file); ``X`` is returned
as float64 (n, d) and ``y`` as int64 (n,) with 1 = anomaly.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from oddeye.errors import DataError

__all__ = ["ADBENCH_GROUPS", "dataset_group", "find_npz", "load_npz"]

#: The group folders of ADBench (tabular sets, ResNet18 image embeddings, BERT text embeddings).
ADBENCH_GROUPS: tuple[str, ...] = ("Classical", "CV_by_ResNet18", "NLP_by_BERT")


def _validate(path: Path, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Check shapes, labels and finiteness; return X float64 (n, d) and y int64 (n,)."""
    if X.ndim != 2:
        raise DataError(f"{path}: X must be 2-D (samples, features); got shape {X.shape}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{path}: y must be 1-D (samples,); got shape {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise DataError(f"{path}: X has {X.shape[0]} rows but y has {y.shape[0]} labels")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{path}: X is empty (shape {X.shape})")
    if X.dtype.kind not in "biuf" or y.dtype.kind not in "biuf":
        raise DataError(f"{path}: X and y must be numeric; got dtypes {X.dtype} and {y.dtype}")
    if X.dtype.kind == "f" and not np.isfinite(X).all():  # integers are always finite
        bad_cols = np.flatnonzero(~np.isfinite(X).all(axis=0))
        shown = ", ".join(str(c) for c in bad_cols[:10]) + (", ..." if bad_cols.size > 10 else "")
        raise DataError(
            f"{path}: X has NaN or infinite values in {bad_cols.size} of {X.shape[1]} columns "
            f"(columns {shown})"
        )
    if not ((y == 0) | (y == 1)).all():
        shown = ", ".join(f"{v:g}" for v in np.unique(y)[:10])
        raise DataError(f"{path}: y must be binary 0/1 (1 = anomaly); found values {shown}")
    return X.astype(np.float64, copy=False), y.astype(np.int64, copy=False)


def load_npz(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Load and validate one ADBench ``.npz``: X float64 (n, d), y int64 (n,) with 1 = anomaly."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: npz file not found")
    if not zipfile.is_zipfile(p):
        raise DataError(f"{p}: not an .npz archive (expected a zip of X.npy and y.npy)")
    try:
        with np.load(p, allow_pickle=False) as data:
            missing = [k for k in ("X", "y") if k not in data.files]
            if missing:
                raise DataError(
                    f"{p}: missing array(s) {', '.join(missing)}; found {sorted(data.files)}"
                )
            X, y = data["X"], data["y"]
    except DataError:
        raise
    except ValueError as exc:  # object arrays refuse to load without pickle
        raise DataError(f"{p}: cannot load with allow_pickle=False ({exc})") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{p}: not a readable .npz file ({exc})") from exc
    return _validate(p, np.asarray(X), np.asarray(y))


def find_npz(root: str | os.PathLike) -> list[Path]:
    """All ``.npz`` files under ``root`` (recursive, hidden skipped), sorted by relative path."""
    base = Path(root)
    if not base.is_dir():
        raise DataError(f"{base}: ADBench folder not found")
    found = [
        p
        for p in base.rglob("*.npz")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(base).parts)
    ]
    return sorted(found, key=lambda p: p.relative_to(base).parts)


def dataset_group(path: str | os.PathLike) -> str:
    """ADBench group of a file: the nearest enclosing folder named like one of ADBENCH_GROUPS,
    else the name of the file's own folder."""
    p = Path(path)
    for parent in p.parents:
        if parent.name in ADBENCH_GROUPS:
            return parent.name
    return p.parent.name
