"""The evaluation protocol of ADBench as the AnoOnly paper uses it, for one data set and seed.

1. Data sets over ``max_samples`` (10,000) are subsampled to it, stratified by label.
2. Stratified 70/30 train/test split.
3. ``labeled`` (10%) of the training anomalies are labelled, rounded up, at least one; every other
   training sample is unlabelled (label 0), the remaining anomalies included.
4. Optional ``contamination``: the share of anomalies among the unlabelled training samples is set
   to exactly that value by subsampling: if there are more unlabelled anomalies than needed, some
   of them are dropped (all normal samples kept); if there are fewer, normal samples are dropped
   (all unlabelled anomalies kept). ``0`` drops every unlabelled anomaly; ``None`` keeps the data
   set's natural share. Labelled anomalies and the test split do not depend on it.
5. ``StandardScaler`` fitted on the training features, applied to both splits.
6. AUROC and AUPR (average precision) of the detector's scores on the test split.

The seed drives the subsample, the split, the labelling, the contamination subsample and the
detector's ``random_state``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from oddeye.errors import DataError

MAX_SAMPLES = 10_000
TEST_SIZE = 0.3
GROUP_BY_FOLDER = {"classical": "Classical", "cv_by_resnet18": "CV", "cv_by_vit": "CV",
                   "nlp_by_bert": "NLP", "nlp_by_roberta": "NLP"}


# -- data access (oddeye.data.adbench reads and validates the files) -------------------------------
def load_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` of an ADBench ``.npz`` file (validated by ``oddeye.data.adbench``)."""
    from oddeye.data.adbench import load_npz as _load

    return _load(path)


def find_npz(root: str | Path) -> list[Path]:
    """Every ``.npz`` under the folder ``root``, or ``[root]`` when it is a file."""
    from oddeye.data.adbench import find_npz as _find

    root = Path(root)
    if root.is_file():
        return [root]
    files = list(_find(root))
    if not files:
        raise DataError(f"{root}: no .npz data set found")
    return files


def dataset_names(files: list[Path], root: str | Path) -> list[str]:
    """One unique display name per file of ``find_npz(root)``: its stem, or, for stems that
    several files share (``A/d.npz``, ``B/d.npz``), the path relative to ``root`` without the
    suffix (``A/d``, ``B/d``), so no data set's row or JSON entry replaces another's."""
    root = Path(root)
    stems = [Path(f).stem for f in files]
    names = []
    for f, stem in zip(files, stems, strict=True):
        if stems.count(stem) > 1:
            try:
                rel = Path(f).relative_to(root)
            except ValueError:  # not under root: fall back to the full path
                rel = Path(f)
            stem = rel.with_suffix("").as_posix()
        names.append(stem)
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:  # not expected from find_npz; refuse rather than lose a data set silently
        raise DataError(f"{root}: several data sets would be named {clash[0]!r}; rename one")
    return names


def dataset_group(path: str | Path) -> str:
    """Short ADBench group of a data set: ``Classical``, ``CV`` or ``NLP`` (else its folder)."""
    from oddeye.data.adbench import dataset_group as _group

    folder = _group(path)
    return GROUP_BY_FOLDER.get(folder.lower(), folder or "other")


# -- the protocol ----------------------------------------------------------------------------------
@dataclass
class Split:
    """One seed's training set (semi-supervised labels) and test set, standardised."""

    X_train: np.ndarray
    y_train: np.ndarray  # 1 = labelled anomaly, 0 = unlabelled
    X_test: np.ndarray
    y_test: np.ndarray  # ground truth
    info: dict = field(default_factory=dict)


def check_dataset(X, y, name: str = "data") -> tuple[np.ndarray, np.ndarray]:
    """Validate a data set: 2-D finite features, binary labels, at least two of each class."""
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[0] == 0:
        raise DataError(f"{name}: X must be a non-empty 2-D array, got shape {X.shape}")
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise DataError(f"{name}: y must have one label per sample ({X.shape[0]}), got {y.shape}")
    if X.dtype.kind not in "biuf":
        raise DataError(f"{name}: X must be numeric, got dtype {X.dtype}")
    if not np.isfinite(X).all():
        bad = int((~np.isfinite(X)).any(axis=1).sum())
        raise DataError(f"{name}: {bad} sample(s) have NaN or infinite features")
    if not np.isin(y, (0, 1)).all():
        raise DataError(f"{name}: y must be 0 (normal) or 1 (anomaly), got {np.unique(y)[:5]}")
    y = y.astype(np.int64)
    n_anom = int(y.sum())
    if n_anom == 0 or n_anom == len(y):
        only = "normal" if n_anom == 0 else "anomalous"
        raise DataError(f"{name}: one class only (every sample is {only}); need both")
    if n_anom < 2 or len(y) - n_anom < 2:
        raise DataError(f"{name}: need at least two samples of each class for a stratified split, "
                        f"got {n_anom} anomalies and {len(y) - n_anom} normal samples")
    return X, y


def stratified_subsample(y: np.ndarray, n_max: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a class-stratified random subset of size ``n_max`` (all when smaller)."""
    n = len(y)
    if n <= n_max:
        return np.arange(n)
    idx_a = np.flatnonzero(y == 1)
    idx_n = np.flatnonzero(y == 0)
    k_a = min(len(idx_a), max(2, int(round(n_max * len(idx_a) / n))))
    keep = np.concatenate([rng.choice(idx_a, k_a, replace=False),
                           rng.choice(idx_n, n_max - k_a, replace=False)])
    return np.sort(keep)


def apply_contamination(idx_normal: np.ndarray, idx_anom: np.ndarray, share: float,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Subsample unlabelled normals/anomalies so that anomalies are ``share`` of the union."""
    if not 0.0 <= share < 1.0:
        raise DataError(f"contamination: must be in [0, 1), got {share}")
    if share == 0.0:
        return idx_normal, idx_anom[:0]
    n_n, n_a = len(idx_normal), len(idx_anom)
    if n_a == 0:
        raise DataError(f"contamination: cannot reach {share:.0%}, the training split has no "
                        f"unlabelled anomaly")
    if n_a / (n_n + n_a) >= share:
        k = max(1, int(round(share * n_n / (1.0 - share))))
        return idx_normal, np.sort(rng.choice(idx_anom, min(k, n_a), replace=False))
    m = int(round(n_a * (1.0 - share) / share))
    if m < 1:
        raise DataError(f"contamination: cannot reach {share:.0%} with {n_a} unlabelled anomalies")
    return np.sort(rng.choice(idx_normal, m, replace=False)), idx_anom


def make_split(X, y, seed: int, labeled: float = 0.1, contamination: float | None = None,
               max_samples: int = MAX_SAMPLES, test_size: float = TEST_SIZE,
               name: str = "data") -> Split:
    """Apply the protocol (module docstring) to one data set for one seed."""
    if not 0.0 < labeled <= 1.0:
        why = ("; without a labelled anomaly there is nothing to learn from" if labeled <= 0
               else "")
        raise DataError(f"labeled: the labelled share of training anomalies must be in (0, 1], "
                        f"got {labeled}{why}")
    X, y = check_dataset(X, y, name)
    rng = np.random.default_rng(seed)
    keep = stratified_subsample(y, max_samples, rng)
    X, y = X[keep], y[keep]
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=test_size, stratify=y,
                                           random_state=seed)
    y_tr_true = y[idx_train]
    idx_anom = np.flatnonzero(y_tr_true == 1)
    n_lab = min(len(idx_anom), max(1, math.ceil(labeled * len(idx_anom))))
    if n_lab == 0:
        raise DataError(f"{name}: the training split holds no anomaly to label")
    labelled = np.sort(rng.choice(idx_anom, n_lab, replace=False))
    unl_anom = np.setdiff1d(idx_anom, labelled)
    unl_norm = np.flatnonzero(y_tr_true == 0)
    if contamination is not None:
        c_rng = np.random.default_rng([seed, 1])
        unl_norm, unl_anom = apply_contamination(unl_norm, unl_anom, float(contamination), c_rng)
    unlabelled = np.concatenate([unl_norm, unl_anom])
    rows = idx_train[np.concatenate([unlabelled, labelled])]
    y_semi = np.concatenate([np.zeros(len(unlabelled), np.int64), np.ones(n_lab, np.int64)])
    scaler = StandardScaler().fit(X[rows].astype(np.float64))
    X_train = scaler.transform(X[rows].astype(np.float64)).astype(np.float32)
    X_test = scaler.transform(X[idx_test].astype(np.float64)).astype(np.float32)
    info = {"n_train": int(len(rows)), "n_labeled": int(n_lab), "n_test": int(len(idx_test)),
            "unlabeled_anomaly_share": float(len(unl_anom) / max(1, len(unlabelled))),
            "n_features": int(X.shape[1])}
    return Split(X_train, y_semi, X_test, y[idx_test], info)


def score_metrics(y_true: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """``(AUROC, AUPR)`` of anomaly scores against ground truth (1 = anomaly)."""
    scores = np.asarray(scores, dtype=np.float64)
    if not np.isfinite(scores).all():
        raise DataError("scores: the detector produced NaN or infinite scores")
    return float(roc_auc_score(y_true, scores)), float(average_precision_score(y_true, scores))


def run_split(split: Split, method: str, anoonly: bool = False, seed: int = 0,
              **hparams) -> dict:
    """Fit one detector on a split and score its test set: auroc, aupr, fit and score seconds."""
    from oddeye.semisup import create_detector

    det = create_detector(method, anoonly=anoonly, random_state=seed, **hparams)
    t0 = time.perf_counter()
    det.fit(split.X_train, split.y_train)
    t1 = time.perf_counter()
    scores = det.decision_function(split.X_test)
    t2 = time.perf_counter()
    auroc, aupr = score_metrics(split.y_test, scores)
    return {"auroc": auroc, "aupr": aupr, "fit_seconds": t1 - t0, "score_seconds": t2 - t1,
            **split.info}


def run_dataset(path: str | Path, method: str, anoonly: bool = False, seeds=(0, 1, 2),
                labeled: float = 0.1, contamination: float | None = None,
                **hparams) -> dict:
    """The protocol on one ``.npz`` for several seeds: means and the per-seed results."""
    path = Path(path)
    X, y = load_npz(path)
    runs = []
    for seed in seeds:
        split = make_split(X, y, seed, labeled, contamination, name=str(path))
        runs.append({"seed": int(seed), **run_split(split, method, anoonly, int(seed), **hparams)})
    return summarize_runs(runs, name=path.stem, group=dataset_group(path))


def summarize_runs(runs: list[dict], name: str, group: str) -> dict:
    """Mean/std AUROC and AUPR and mean fit seconds over seeds, with the per-seed rows."""
    auroc = np.array([r["auroc"] for r in runs])
    aupr = np.array([r["aupr"] for r in runs])
    return {"name": name, "group": group, "auroc": float(auroc.mean()),
            "aupr": float(aupr.mean()), "auroc_std": float(auroc.std()),
            "aupr_std": float(aupr.std()),
            "seconds": float(np.mean([r["fit_seconds"] for r in runs])), "runs": runs}
