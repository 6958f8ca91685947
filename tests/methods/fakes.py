"""Test stand-ins shared by the method tests."""

from __future__ import annotations

import torch


class FeatureBatches:
    """Stands in for a TrainSet in ``fit_head``: yields given feature dicts (no backbone)."""

    def __init__(self, batches: list[dict[str, torch.Tensor]]):
        self._batches = batches
        self.progress = False

    def __len__(self) -> int:
        return sum(next(iter(b.values())).shape[0] for b in self._batches)

    def iter_features(self, indices=None, desc: str = ""):
        yield from self._batches
