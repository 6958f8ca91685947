"""Convert and validate metric inputs (numpy arrays or torch tensors), with clear DataErrors."""

from __future__ import annotations

from typing import Any

import numpy as np

from oddeye.errors import DataError


def to_numpy(value: Any, name: str) -> np.ndarray:
    """Return ``value`` as a numpy array; torch tensors are detached and moved to the CPU."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor, without importing torch
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - exotic objects
        raise DataError(f"{name}: cannot be converted to an array ({exc})") from exc
    if arr.dtype == object:
        raise DataError(f"{name}: expected a numeric array, got objects (ragged or mixed input?)")
    return arr


def as_scores(value: Any, name: str, ndim: int) -> np.ndarray:
    """Float scores of rank ``ndim`` without NaN; float32/float64 kept, others become float64."""
    arr = to_numpy(value, name)
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{name}: expected numbers, got dtype {arr.dtype}")
    if ndim == 3 and arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]  # (N, 1, H, W) -> (N, H, W)
    if arr.ndim != ndim:
        want = "(N,)" if ndim == 1 else "(N, H, W)"
        raise DataError(f"{name}: expected shape {want}, got {arr.shape}")
    if arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    elif arr.dtype.kind != "f" or arr.dtype.itemsize > 8:
        arr = arr.astype(np.float64)
    if arr.size and np.isnan(arr.min()):  # min propagates NaN: one pass, no temporary
        raise DataError(f"{name}: contains {int(np.isnan(arr).sum())} NaN value(s)")
    return arr


def as_binary(value: Any, name: str, ndim: int) -> np.ndarray:
    """Labels or masks as a bool array; every value must be 0 or 1."""
    arr = to_numpy(value, name)
    if ndim == 3 and arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != ndim:
        want = "(N,)" if ndim == 1 else "(N, H, W)"
        raise DataError(f"{name}: expected shape {want}, got {arr.shape}")
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "iuf":
        raise DataError(f"{name}: expected 0/1 values, got dtype {arr.dtype}")
    if arr.size == 0 or (arr.dtype.kind in "iu" and arr.min() >= 0 and arr.max() <= 1):
        return arr.astype(bool)  # fast path: integer masks already 0/1
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        seen = np.unique(arr[bad])[:5].tolist()
        hint = " (a 0/255 mask? divide it by 255)" if 255 in seen else ""
        raise DataError(f"{name}: must contain only 0 and 1, found {seen}{hint}")
    return arr == 1


def check_batch(
    image_scores: Any,
    image_labels: Any,
    anomaly_maps: Any = None,
    masks: Any = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Validate one batch and return (scores, labels, maps, masks) as numpy arrays."""
    scores = as_scores(image_scores, "image_scores", 1)
    labels = as_binary(image_labels, "image_labels", 1)
    if scores.shape[0] != labels.shape[0]:
        raise DataError(f"image_scores has {scores.shape[0]} entries but image_labels has "
                        f"{labels.shape[0]}")
    if (anomaly_maps is None) != (masks is None):
        given, missing = ("anomaly_maps", "masks") if masks is None else ("masks", "anomaly_maps")
        raise DataError(f"{given} given without {missing}: pixel metrics need both")
    if anomaly_maps is None:
        return scores, labels, None, None
    maps = as_scores(anomaly_maps, "anomaly_maps", 3)
    gt = as_binary(masks, "masks", 3)
    if maps.shape != gt.shape:
        raise DataError(f"anomaly_maps has shape {maps.shape} but masks has shape {gt.shape}")
    if maps.shape[0] != scores.shape[0]:
        raise DataError(f"anomaly_maps has {maps.shape[0]} maps but image_scores has "
                        f"{scores.shape[0]} entries")
    return scores, labels, maps, gt
