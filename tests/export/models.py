"""Tiny fitted models for the product-surface tests (export, serve, report), fitted once a session.

Small on purpose (64 px input, 12 training images of the synthetic ``grid`` class) so fitting takes
seconds; methods with training epochs get the fewest the constructor accepts.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np

SIZE = 64
N_TRAIN = 12
_CACHE: dict[tuple[str, str], Path] = {}

# constructor arguments that make slow-to-train methods fit in a second or two
_FAST = {"epochs": 1, "n_epochs": 1, "num_epochs": 1, "warmup_epochs": 0, "steps": 2,
         "max_steps": 2, "iterations": 2, "train_steps": 2, "queries_per_class": 4}


def fast_params(method: str) -> dict:
    """The subset of ``_FAST`` that the method's constructor accepts."""
    from oddeye.methods import get_method

    sig = inspect.signature(get_method(method).__init__).parameters
    return {k: v for k, v in _FAST.items() if k in sig}


def fitted_model(method: str, synth_root: Path, workdir: Path) -> Path:
    """Path of a ``.oddeye`` file of ``method`` fitted on the synthetic grid class (cached)."""
    key = (method, str(synth_root))
    if key in _CACHE and _CACHE[key].exists():
        return _CACHE[key]
    from oddeye.api import Detector
    from oddeye.data.mvtec import load_dataset
    from oddeye.methods import get_method

    cat = next(c for c in load_dataset(synth_root) if c.name == "grid")
    paths = [s.path for s in cat.train[:N_TRAIN]]
    kw: dict = {}
    cls = get_method(method)
    if cls.needs_labels:
        from PIL import Image

        from oddeye.data.mvtec import load_sample_mask
        from oddeye.preprocess import resize_mask

        defects = [s for s in cat.test if s.label == 1][:2]
        paths += [s.path for s in defects]
        kw["labels"] = [0] * N_TRAIN + [1] * len(defects)
        masks = []
        for p in paths:
            with Image.open(p) as im:
                w, h = im.size
            sample = next((s for s in defects if s.path == p), None)
            m = np.zeros((h, w), np.uint8) if sample is None else load_sample_mask(sample, (h, w))
            masks.append(resize_mask(m, SIZE))
        kw["masks"] = masks
    det = Detector(method=method, size=SIZE, **fast_params(method))
    det.fit(paths, validation=[s.path for s in cat.validation] or None,
            categories=["grid"] * len(paths), progress=False, **kw)
    if det.needs_references:
        det.set_references([s.path for s in cat.train[:4]])
    out = Path(workdir) / f"{method}.oddeye"
    det.save(out)
    _CACHE[key] = out
    return out


def sample_images(synth_root: Path, n_good: int = 2, n_defect: int = 3) -> list[Path]:
    """A few good and defective test images of the synthetic grid class."""
    from oddeye.data.mvtec import load_dataset

    cat = next(c for c in load_dataset(synth_root) if c.name == "grid")
    good = [s.path for s in cat.test if s.label == 0][:n_good]
    bad = [s.path for s in cat.test if s.label == 1][:n_defect]
    return good + bad
