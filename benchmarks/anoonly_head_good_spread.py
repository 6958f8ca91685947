"""Diagnosis of `anoonly-head` on held-out GOOD images of the shared sets (no test image is scored).

The K labelled defects are drawn from the test split as in `oddeye benchmark --suite anoonly-image`
(they are training data here); the good images scored are `validation/good` where the set has one,
else a fifth of `train/good` kept out of the fit. Per set, K and loss: the spread of the prior
(standardised PatchCore distance) and of the learned term over good patches, the learned term's
99.9% quantile, a good image's largest patch score with the prior alone / the prior plus the
whole learned term / the prior plus what the fitted gate lets through (gate quantile nan: off),
the rank correlation of those image scores with the prior's, and the median learned term on the
labelled defects' patches. One torch thread.

Run: .venv/bin/python benchmarks/anoonly_head_good_spread.py tire magnetic_tile deeppcb
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.stats import spearmanr

from oddeye.api import Detector
from oddeye.bench.detection_suite import DATASETS, shared_root
from oddeye.commands._common import pick_shots
from oddeye.data.mvtec import load_dataset, load_sample_mask
from oddeye.methods.anoonly_head import gated
from oddeye.preprocess import load_resized, resize_mask, to_batch


def parts(det: Detector, paths: list) -> tuple[torch.Tensor, ...]:
    """(prior, learned, added term as the fitted gate lets it) maps of ``paths``, (N, h, w)."""
    m, head = det.model_, det.model_.head
    x = to_batch(load_resized(paths, 256))
    out = []
    with torch.inference_mode():
        for i in range(0, len(x), 8):
            emb = head.embed(m.extractor(m.normalize(x[i:i + 8])))
            inp = head._inputs_of(emb)
            learned = head.learned(inp)
            out.append((head._distance(emb, head.bank, head.bank_sq)[:, 0], learned,
                        gated(learned, head.gate_on, head.learned_floor)))
    return tuple(torch.cat(t) for t in zip(*out, strict=True))


def main(names: list[str]) -> None:
    torch.set_num_threads(1)
    for ds in names:
        cat = load_dataset(shared_root() / DATASETS[ds])[0]
        goods = [s.path for s in cat.train]
        if cat.validation:
            held = [s.path for s in cat.validation]
        else:
            idx = np.random.default_rng(0).permutation(len(goods))
            held = [goods[i] for i in idx[: len(goods) // 5]]
            goods = [goods[i] for i in idx[len(goods) // 5:]]
        for k in (5, 10):
            chosen = pick_shots([s for s in cat.test if s.label == 1], k, 0)
            masks = [np.zeros((256, 256), np.uint8)] * len(goods)
            for s in chosen:
                with Image.open(s.path) as im:
                    w, h = im.size
                masks.append(resize_mask(load_sample_mask(s, (h, w)), 256))
            for anoonly in (True, False):
                det = Detector(method="anoonly-head", anoonly=anoonly, seed=0)
                det.fit(goods + [s.path for s in chosen], labels=[0] * len(goods) + [1] * k,
                        masks=masks, progress=False)
                prior, learned, gated = parts(det, held)
                _, learned_d, _ = parts(det, [s.path for s in chosen])
                grid = learned_d.shape[1:]
                sel = torch.stack([F.adaptive_avg_pool2d(torch.as_tensor(mk).float()[None, None],
                                                         grid)[0, 0] for mk in masks[len(goods):]])
                pm = prior.flatten(1).amax(1)
                whole = (prior + learned).flatten(1).amax(1)
                with_gate = (prior + gated).flatten(1).amax(1)
                rho_w = spearmanr(pm.numpy(), whole.numpy()).correlation
                rho_g = spearmanr(pm.numpy(), with_gate.numpy()).correlation
                print(f"{ds} K={k} anoonly={anoonly}: sd prior {prior.std():.2f} learned "
                      f"{learned.std():.2f} (mean {learned.mean():+.2f}, q99.9 "
                      f"{learned.flatten().quantile(0.999):.2f}, floor "
                      f"{float(det.model_.head.learned_floor):.2f}, gate quantile "
                      f"{float(det.model_.head.gate_quantile):g}) | image max: prior "
                      f"{pm.mean():.2f}, +whole term {whole.mean():.2f} (rho {rho_w:.2f}), "
                      f"+gated {with_gate.mean():.2f} (rho {rho_g:.2f}) | labelled defect "
                      f"patches: learned median {learned_d[sel >= 0.3].median():.2f}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:] or ["tire", "magnetic_tile", "deeppcb"])
