"""Validation-only test of a PatchCore memory bank built from flipped training images too.

Candidates: the default; the fitting images plus their horizontal mirror images; plus their
horizontal and vertical mirror images (the bank stays capped at 10,000 patches, so inference
costs the same). Writes section ``selection-patchcore-flips`` (``-seed<S>`` etc. as every
selection script; run raw, before the cosine default, so a rerun now writes ``-cosine``).
Measured, not built (docs/methods.md, "Flipped training images").
Run: ``.venv/bin/python benchmarks/patchcore_flips_selection.py [--seed S]``.
"""

import numpy as np

import oddeye.bench.selection_suite as suite
from oddeye.preprocess import load_resized

CANDIDATES = {
    "default": {},
    "plus horizontal flips": {"augment": "h"},
    "plus horizontal and vertical flips": {"augment": "hv"},
}

_score = suite.score_candidate


def with_flips(images: list, axes: str) -> list[np.ndarray]:
    """The images (resized to 256) followed by their mirror images along ``axes`` ("h", "v")."""
    imgs = [np.asarray(x) for x in load_resized(images, 256)]
    out = list(imgs)
    if "h" in axes:
        out += [np.ascontiguousarray(x[:, ::-1]) for x in imgs]
    if "v" in axes:
        out += [np.ascontiguousarray(x[::-1]) for x in imgs]
    return out


def score_candidate(method: str, params: dict, fit: list, images: list, labels: np.ndarray,
                    masks) -> dict:
    """The suite's scoring, with the fitting images augmented as the candidate's ``augment``
    says."""
    params = dict(params)
    axes = params.pop("augment", None)
    return _score(method, params, with_flips(fit, axes) if axes else fit, images, labels, masks)


if __name__ == "__main__":
    args = suite.seed_parser(__doc__).parse_args()
    suite.score_candidate = score_candidate  # the suite's run() looks it up at call time
    suite.run_seeded("patchcore", "selection-patchcore-flips", CANDIDATES, args.seed,
                     args.placement, **suite.seed_kwargs(args))
