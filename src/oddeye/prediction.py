"""What a detector returns, and the scoring steps every detector shares (torch or ONNX Runtime).

A detector only has to provide ``iter_predict`` (one ``Prediction`` per batch), ``threshold_``
and ``score_scale_``; ``PredictorMixin`` builds labels, normalised scores and ``predict`` on top,
so the eager ``Detector`` and the exported ``OnnxDetector`` cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from oddeye.errors import DataError, ImageReadError
from oddeye.io.images import array_like_to_numpy, is_array_like


@dataclass
class Prediction:
    """Scores and maps of a batch of images; ``maps`` are at the model input size (S x S)."""

    scores: np.ndarray
    normalized_scores: np.ndarray
    labels: np.ndarray
    maps: np.ndarray
    threshold: float
    original_sizes: list[tuple[int, int]] = field(default_factory=list)

    def map_at_original_size(self, i: int) -> np.ndarray:
        """Anomaly map ``i`` resized (bilinear) to its image's original (H, W).

        ``i`` indexes the images as a list does (``-1`` is the last); one out of range is an
        ``IndexError`` naming the valid range, not numpy's or a list's message."""
        import operator

        import torch

        from oddeye.postprocess import upsample

        i = operator.index(i)
        n = min(len(self.maps), len(self.original_sizes))
        if not -n <= i < n:
            valid = f"0..{n - 1} (or -{n}..-1 from the end)" if n else "none: it holds no images"
            raise IndexError(f"image index {i} is out of range for a prediction of {n} "
                             f"image(s); valid indices: {valid}")
        i %= n
        h, w = self.original_sizes[i]
        return upsample(torch.from_numpy(self.maps[i : i + 1]), (h, w))[0].numpy()

    @classmethod
    def concat(cls, parts: list[Prediction]) -> Prediction:
        """One prediction from consecutive batches (same threshold)."""
        if not parts:
            raise DataError("predict got no images")
        return cls(scores=np.concatenate([p.scores for p in parts]),
                   normalized_scores=np.concatenate([p.normalized_scores for p in parts]),
                   labels=np.concatenate([p.labels for p in parts]),
                   maps=np.concatenate([p.maps for p in parts]), threshold=parts[0].threshold,
                   original_sizes=[s for p in parts for s in p.original_sizes])


def check_image_item(item: Any, name: str) -> None:
    """An ``ImageReadError`` naming ``name`` and the item's type unless it is a file path, a PIL
    image or array-like: ``None`` or a number would otherwise surface as "got shape ()"."""
    if isinstance(item, (str, Path, np.ndarray, Image.Image, list, tuple)):
        return  # lists/tuples of pixel values are array-like (np.asarray)
    if hasattr(item, "__array__") or hasattr(item, "__array_interface__"):
        return  # torch tensors and other array-likes
    raise ImageReadError(f"{name} is a {type(item).__name__}, not an image: give a file path, a "
                         "PIL image or a numpy array of shape (H, W), (H, W, 3) or (H, W, 4)")


def image_list(images: Any, what: str = "images", single_array: bool = True) -> list:
    """``images`` as a list, read once (any iterable: a generator too), each item checked by
    ``check_image_item`` before anything is decoded. One path or PIL image is one image; so is
    one array of at most 3 dimensions when ``single_array`` (``predict``), while ``fit`` takes
    an array as a stack of images ((N, H, W) or (N, H, W, C)) and refuses one that looks like a
    single image ((H, W) or (H, W, 3 / 4)), which iterated would be H one-pixel-wide strips. A
    torch tensor (or other array-like) is first converted with ``array_like_to_numpy`` and
    then behaves exactly as that numpy array."""
    if is_array_like(images):
        images = array_like_to_numpy(images, what)
    if (not single_array and isinstance(images, np.ndarray) and images.dtype != object
            and (images.ndim <= 2 or (images.ndim == 3 and images.shape[-1] in (3, 4)))):
        raise DataError(f"{what} is one {tuple(images.shape)} array, which reads as a single "
                        f"image here; this takes several images: give a list of images or a "
                        f"stack of shape (N, H, W) or (N, H, W, C)")
    if isinstance(images, (str, Path, Image.Image)) or (
            single_array and isinstance(images, np.ndarray) and images.ndim <= 3
            and images.dtype != object):
        images = [images]
    try:
        items = list(images)
    except TypeError:
        raise DataError(f"{what} must be an image or an iterable of images, got "
                        f"{type(images).__name__}") from None
    for i, item in enumerate(items):
        check_image_item(item, f"{what}[{i}]")
        if is_array_like(item):  # a list of tensors: each as its numpy array
            items[i] = array_like_to_numpy(item, f"{what}[{i}]")
    return items


def check_batch_size(batch_size: Any) -> None:
    """A ``DataError`` unless ``batch_size`` is None, 0 (both: the detector's own) or an integer
    >= 1; a negative or fractional size would otherwise end in "predict got no images"."""
    if batch_size is None:
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 0:
        raise DataError(f"batch_size must be None or an integer >= 1, got {batch_size!r}")


class PredictorMixin:
    """``predict``, ``decision_function`` and the score normalisation shared by all detectors."""

    threshold_: float
    score_scale_: float

    def iter_predict(self, images: list, batch_size: int | None = None,
                     progress: bool = False) -> Iterator[Prediction]:
        raise NotImplementedError

    def _prediction(self, scores: np.ndarray, maps: np.ndarray,
                    sizes: list[tuple[int, int]]) -> Prediction:
        """A batch's prediction from raw scores and maps: labels and normalised scores added."""
        sc = np.asarray(scores, dtype=np.float64)
        return Prediction(scores=sc, normalized_scores=self.normalize_scores(sc),
                          labels=(sc > self.threshold_).astype(np.int64), maps=maps,
                          threshold=self.threshold_, original_sizes=sizes)

    def predict(self, images: Any, batch_size: int | None = None,
                progress: bool = False) -> Prediction:
        """Scores, normalised scores (0.5 at the threshold), labels (1 = defect) and maps."""
        check_batch_size(batch_size)
        items = image_list(images)
        return Prediction.concat(list(self.iter_predict(items, batch_size, progress)))

    def decision_function(self, images: Any) -> np.ndarray:
        """Raw image scores (higher = more anomalous)."""
        return self.predict(images).scores

    def normalize_scores(self, scores: np.ndarray) -> np.ndarray:
        """Logistic map of raw scores to (0, 1) with 0.5 exactly at the threshold."""
        z = (np.asarray(scores, dtype=np.float64) - self.threshold_) / self.score_scale_
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
