"""Validation-only check of RD4AD's stage weights (no test split used): the selection suite's
data scored with the paper's plain sum of the per-stage maps (``stage_weights="equal"``, the
default) and with each stage standardised by its training maps' mean and standard deviation
(``"spread"``). The weighting is set after training, so one fit per set serves both rows: the
``spread`` fit is scored as it is and again with its offsets and scales reset to 0 and 1, which
is the ``equal`` model exactly (same seed, same training). Writes section
``selection-rd4ad-stage-weights`` (``-seed<S>`` with ``--seed S``). Run:
``.venv/bin/python benchmarks/rd4ad_stage_weights_selection.py [--seed S]``. The seconds column
counts the shared fit in the first row it was needed for.
"""

import time

import numpy as np
import torch

from oddeye.bench import selection_suite
from oddeye.bench.selection_suite import run_seeded, score_fitted, seed_kwargs, seed_parser

CANDIDATES = {"equal (default, the paper's sum)": {"stage_weights": "equal"},
              "spread (each stage standardised)": {"stage_weights": "spread"}}

_fits: dict = {}


def score_once(method: str, params: dict, fit: list, images: list, labels: np.ndarray,
               masks) -> dict:
    """``selection_suite.score_candidate`` with one ``spread`` fit per (fitting images, seed),
    scored with the weighting the candidate names."""
    from oddeye.api import Detector

    params = dict(params)
    weights = params.pop("stage_weights")
    key = (tuple(map(str, fit)), params.get("seed", 0))
    t0 = time.perf_counter()
    if key not in _fits:
        _fits[key] = Detector(method=method, stage_weights="spread", **params).fit(
            fit, progress=False)
    det = _fits[key]
    head = det.model_.head
    stats = (head.stage_offset.clone(), head.stage_scale.clone())
    if weights == "equal":
        head.stage_offset = torch.zeros_like(stats[0])
        head.stage_scale = torch.ones_like(stats[1])
    try:
        res = score_fitted(det, images, labels, masks)
    finally:
        head.stage_offset, head.stage_scale = stats
    res["seconds"] = time.perf_counter() - t0
    return res


if __name__ == "__main__":
    args = seed_parser(__doc__).parse_args()
    selection_suite.score_candidate = score_once
    run_seeded("rd4ad", "selection-rd4ad-stage-weights", CANDIDATES, args.seed, args.placement,
               **seed_kwargs(args))
