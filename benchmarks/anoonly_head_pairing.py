"""Diagnosis on a test split (nothing is chosen from it): does the AnoOnly head lose to PatchCore
because of its labels, or because the two were fitted on different draws?

Usage: ``python benchmarks/anoonly_head_pairing.py SEED K [DATASET]`` (default tire). For the K
labelled defects the ``anoonly-image`` suite draws with SEED:

* PatchCore's image AUROC on the reduced test split for seed 0 and SEED, each with the set's
  ``validation/good`` for the threshold (every good image fitted; where the set has one) and
  without it (its default 10% hold-out);
* the head (AnoOnly loss, seed SEED) against its own PatchCore prior (the same model with the
  learned term left out): image AUROC of each, how many good and defective images the learned
  term lifts, and where the lifted maxima sit.

This is what showed that the suite compared the heads with an unpaired PatchCore (section
``anoonly-image-seed1`` as it stood in the twenty-third session); docs/semisup.md.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from oddeye.api import Detector
from oddeye.bench.detection_suite import DATASETS, shared_root
from oddeye.commands._common import pick_shots
from oddeye.data.mvtec import load_dataset, load_sample_mask
from oddeye.evaluation import evaluate_category
from oddeye.preprocess import load_resized, to_batch


def patchcore_draws(cat, seed: int, exclude: set) -> None:
    """PatchCore on the reduced split for seeds 0 and ``seed``, with and without validation."""
    goods = [s.path for s in cat.train]
    val = [s.path for s in cat.validation] or None
    for pseed in dict.fromkeys((0, seed)):
        for v in ([val, None] if val else [None]):
            # the heads' raw features (their default), as when this ran
            pc = Detector(method="patchcore", seed=pseed, cosine=False).fit(
                goods, validation=v, progress=False)
            r = evaluate_category(pc, cat, progress=False, exclude=exclude)
            print(f"PatchCore seed {pseed}, validation/good {'yes' if v else 'no'}: image / "
                  f"pixel AUROC {r['image_auroc']:.3f} / {r['pixel_auroc']:.3f}", flush=True)


def head_against_prior(cat, seed: int, chosen: list) -> None:
    """The head's image AUROC with and without its learned term, and what the term lifts."""
    goods = [s.path for s in cat.train]
    masks: list = [None] * len(goods)
    for s in chosen:
        with Image.open(s.path) as im:
            w, h = im.size
        masks.append(load_sample_mask(s, (h, w)))
    det = Detector(method="anoonly-head", anoonly=True, seed=seed)
    det.fit(goods + [s.path for s in chosen], labels=[0] * len(goods) + [1] * len(chosen),
            masks=masks, progress=False)
    exclude = {s.path for s in chosen}
    test = [s for s in cat.test if s.path not in exclude]
    y = np.array([s.label for s in test])
    m, head = det.model_, det.model_.head
    prior, added = [], []
    with torch.inference_mode():
        for i in range(0, len(test), 8):
            x = to_batch(load_resized([s.path for s in test[i:i + 8]], det.size))
            p, a = head.terms(m.extractor(m.normalize(x)))
            prior.append(p.numpy())
            added.append(a.numpy())
    total = np.concatenate(prior) + np.concatenate(added)
    n, h, w = total.shape
    s_prior = np.concatenate(prior).reshape(n, -1).max(1)
    s_head = total.reshape(n, -1).max(1)
    check = np.abs(det.predict([s.path for s in test]).scores - s_head).max()
    print(f"head: {det.fit_choices_}")
    print(f"image AUROC: prior {roc_auc_score(y, s_prior):.3f}, head "
          f"{roc_auc_score(y, s_head):.3f} (largest difference from the model's own scores "
          f"{check:.1e})")
    lift = s_head - s_prior
    arg = total.reshape(n, -1).argmax(1)
    r, c = arg // w, arg % w
    edge = np.minimum.reduce([r, c, h - 1 - r, w - 1 - c])
    for lab, name in ((0, "good"), (1, "defective")):
        sel = y == lab
        up = sel & (lift > 1e-6)
        where = (f"; their maxima {np.median(edge[up]):.0f} cells from the edge (median, of "
                 f"{h} x {w})" if up.any() else "")
        print(f"{name}: {sel.sum()} images, the learned term lifts {up.sum()} (mean lift "
              f"{lift[sel].mean():.3f}, largest {lift[sel].max():.3f}){where}")


def main(argv: list[str]) -> int:
    seed, k = int(argv[0]), int(argv[1])
    ds = argv[2] if len(argv) > 2 else "tire"
    torch.set_num_threads(2)
    cat = load_dataset(shared_root() / DATASETS[ds])[0]
    chosen = pick_shots([s for s in cat.test if s.label == 1], k, seed)
    print(f"{ds}, K = {k}, labelled defects drawn with seed {seed}")
    patchcore_draws(cat, seed, {s.path for s in chosen})
    head_against_prior(cat, seed, chosen)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
