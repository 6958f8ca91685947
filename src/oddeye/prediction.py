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

from oddeye.errors import DataError


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
        """Anomaly map ``i`` resized (bilinear) to its image's original (H, W)."""
        import torch

        from oddeye.postprocess import upsample

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
        if isinstance(images, (str, Path)) or (isinstance(images, np.ndarray) and images.ndim <= 3
                                               and images.dtype != object):
            images = [images]
        return Prediction.concat(list(self.iter_predict(list(images), batch_size, progress)))

    def decision_function(self, images: Any) -> np.ndarray:
        """Raw image scores (higher = more anomalous)."""
        return self.predict(images).scores

    def normalize_scores(self, scores: np.ndarray) -> np.ndarray:
        """Logistic map of raw scores to (0, 1) with 0.5 exactly at the threshold."""
        z = (np.asarray(scores, dtype=np.float64) - self.threshold_) / self.score_scale_
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
