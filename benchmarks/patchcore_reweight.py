"""Validation-only check (no test split used) of the PatchCore paper's image-score reweighting
(Roth et al., CVPR 2022, Eq. 7), which oddeye's PatchCore does not apply.

Eq. 7: with ``m_test`` the image's patch farthest from the bank, ``m*`` its nearest bank patch
and ``s* = |m_test - m*|`` (oddeye's image score), the score becomes
``s = (1 - exp(s*) / sum_{m in N_b(m*)} exp(|m_test - m|)) * s*``, ``N_b(m*)`` the ``b`` bank
patches nearest to ``m*`` (``m*`` itself among them, as anomalib 2.x computes it; b = 9,
anomalib's default). The factor lies in ``[1 - 1/b, 1)``: near 1 when ``m*`` is far from the
rest of the bank (a rare normal patch: the candidate gets its full distance), near ``1 - 1/b``
when ``m*`` sits in a dense region. The authors' released code leaves it out (its image score
is the largest patch distance, as oddeye's); anomalib applies it.

The factor is computed here outside the model, from the default PatchCore's own head (same
embedding, bank and search space), on the selection suite's sets; it changes image scores
only, so only image AUROC is compared. Run:
``.venv/bin/python benchmarks/patchcore_reweight.py [--seed S]`` (section
``patchcore-reweight``, ``-seed<S>``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import numpy as np
import torch

from oddeye.api import Detector
from oddeye.bench.detection_suite import DATASETS
from oddeye.bench.results import write_section
from oddeye.bench.selection_suite import build_sets
from oddeye.methods.neighbours import nearest_distance
from oddeye.metrics.functional import auroc
from oddeye.preprocess import to_batch

NEIGHBOURS = 9


def reweight(s_star: torch.Tensor, m_test: torch.Tensor, bank: torch.Tensor,
             b: int = NEIGHBOURS) -> tuple[torch.Tensor, torch.Tensor]:
    """(reweighted scores (N,), factors (N,)) for each image's farthest patch ``m_test``
    (N, D) at distance ``s_star`` (N,) from the (M, D) bank, Eq. 7 of the PatchCore paper."""
    nearest = torch.cdist(m_test, bank).argmin(1)  # m* of each image
    support = torch.cdist(bank[nearest], bank).topk(min(b, bank.shape[0]), largest=False).indices
    d = torch.linalg.vector_norm(m_test[:, None, :] - bank[support], dim=2)  # (N, b), m* first
    factor = 1 - torch.softmax(d, dim=1)[:, 0]
    return factor * s_star, factor


def farthest_patches(det: Detector, images: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(largest patch distance (N,), that patch in the bank's search space (N, D)) under the
    fitted PatchCore ``det``, computed by its own head."""
    model, head = det.model_, det.model_.head
    s_all, m_all = [], []
    with torch.inference_mode():
        for s in range(0, len(images), 8):
            x = to_batch(images[s:s + 8])
            emb = head.embed(model.extractor(model.normalize(x)))
            n, d, h, w = emb.shape
            q = head.to_search_space(emb.permute(0, 2, 3, 1).reshape(-1, d))
            dist = nearest_distance(q, head.bank, head.bank_sq).view(n, h * w)
            q = q.view(n, h * w, -1)
            best = dist.argmax(1)
            s_all.append(dist[torch.arange(n), best])
            m_all.append(q[torch.arange(n), best])
    return torch.cat(s_all), torch.cat(m_all)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="fit seed (coreset)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        sets = build_sets(tmp, list(DATASETS))
        for name, (fit, imgs, y, _) in sets.items():
            det = Detector(method="patchcore", seed=args.seed).fit(fit, progress=False)
            images = [np.asarray(i) for i in imgs]
            s_star, m_test = farthest_patches(det, images)
            own = det.predict(images).scores
            gap = float(np.abs(own - s_star.numpy()).max())
            if gap > 1e-3:
                raise SystemExit(f"{name}: recomputed s* differs from the model's scores by {gap}")
            s_new, factor = reweight(s_star, m_test, det.model_.head.bank)
            f = factor.numpy()
            rows.append((name, auroc(s_star.numpy(), y), auroc(s_new.numpy(), y),
                         float(np.percentile(f, 0)), float(np.median(f)),
                         float(np.percentile(f, 100)),
                         float(np.median(s_star.numpy()))))
            print(rows[-1], file=sys.stderr, flush=True)
    mean = [float(np.mean([r[i] for r in rows])) for i in (1, 2)]
    lines = [f"## PatchCore image-score reweighting (paper Eq. 7), validation only, fit seed "
             f"{args.seed}", "",
             "Selection-suite sets (`oddeye.bench.selection_suite.build_sets`, split 0: fitting "
             "images from `train/good`, held-out good images and their pseudo-defects; synthetic "
             "classes noise, nut of `oddeye synth --seed 1`). Default PatchCore; the Eq. 7 factor "
             f"from its own head and bank, b = {NEIGHBOURS} (`benchmarks/patchcore_reweight.py`). "
             "Image AUROC with the largest patch distance s* (oddeye's score) and with the "
             "reweighted score; the factor's range over the set's images and the median s*.", "",
             "| set | image AUROC, s* | image AUROC, Eq. 7 | factor min / median / max | "
             "median s* |", "|---|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]:.3f} | {r[2]:.3f} | {r[3]:.3f} / {r[4]:.3f} / {r[5]:.3f} | "
              f"{r[6]:.3f} |" for r in rows]
    lines += [f"| mean | {mean[0]:.3f} | {mean[1]:.3f} | | |"]
    section = "patchcore-reweight" + (f"-seed{args.seed}" if args.seed else "")
    write_section(section, "\n".join(lines))


if __name__ == "__main__":
    main()
