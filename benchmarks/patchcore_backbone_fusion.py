"""Two backbones fused at the map level: PatchCore on MobileNetV2 and on EfficientNet-Lite0,
each map standardised by the mean and standard deviation of its own maps of good images kept
out of its fit, summed. The image score of all three rows is the maximum of the smoothed map
(one rule for the comparison; the default PatchCore takes its raw maximum, given in brackets).

``--split validation`` (the decision; no test split): the selection suite's sets, a seeded
tenth of each fitting set held out for the standardisation. ``--split test`` (a report, run after
the decision): the shared sets' test splits, standardised on ``validation/good`` where the set
has it, else on a seeded tenth of ``train/good`` (as PatchCore's threshold hold-out).
Writes section ``selection-patchcore-fusion`` (``-seed<S>``) or ``patchcore-fusion-test``
(``-seed<S>``). Run: ``.venv/bin/python benchmarks/patchcore_backbone_fusion.py --split
validation|test [--seed S]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from oddeye.api import Detector
from oddeye.bench.detection_suite import DATASETS, shared_root
from oddeye.bench.results import DEFAULT_RESULTS, write_section
from oddeye.bench.selection_suite import build_sets
from oddeye.metrics import evaluate
from oddeye.preprocess import resize_mask

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from map_fusion import fusion_table, median_seconds  # noqa: E402

BACKBONES = ("mobilenet_v2", "efficientnet_lite0")
ROWS = (*BACKBONES, "fused")


def held_out(paths: list, seed: int) -> tuple[list, list]:
    """(fit, held out): a seeded tenth (at least 2) kept out of the fit."""
    order = np.random.default_rng(seed).permutation(len(paths))
    k = max(2, len(paths) // 10)
    return [paths[i] for i in order[k:]], [paths[i] for i in order[:k]]


def fused_rows(fit: list, good: list, images: list, labels: np.ndarray, masks: np.ndarray,
               seed: int) -> dict[str, dict]:
    """Metrics of each backbone's PatchCore and of their standardised sum (smoothed-map max)."""
    out, z = {}, {}
    for bb in BACKBONES:
        t0 = time.perf_counter()
        det = Detector(method="patchcore", backbone=bb, holdout=0, seed=seed).fit(
            fit, progress=False)
        g = det.predict(good).maps
        mu, sd = float(g.mean()), float(g.std())
        maps, raw = [], []
        for i in range(0, len(images), 16):
            p = det.predict(images[i:i + 16])
            maps.append(p.maps)
            raw.append(p.scores)
        m = np.concatenate(maps)
        z[bb] = (m - mu) / sd
        out[bb] = evaluate(m.reshape(len(m), -1).max(1), labels, m, masks)
        out[bb]["raw_image_auroc"] = evaluate(np.concatenate(raw), labels)["image_auroc"]
        out[bb]["seconds"] = time.perf_counter() - t0
    f = z[BACKBONES[0]] + z[BACKBONES[1]]
    out["fused"] = evaluate(f.reshape(len(f), -1).max(1), labels, f, masks)
    return out


def validation_sets(seed: int, tmp: str) -> dict[str, tuple]:
    sets = {}
    for name, (fit, imgs, y, ms) in build_sets(tmp, list(DATASETS)).items():
        fit, good = held_out(fit, seed)
        sets[name] = (fit, good, imgs, y, np.stack([resize_mask(np.asarray(m), 256)
                                                    for m in ms]))
    return sets


def test_sets(seed: int) -> dict[str, tuple]:
    from oddeye.data.mvtec import load_dataset, load_sample_mask

    def mask(s):
        with Image.open(s.path) as im:
            w, h = im.size
        return resize_mask(load_sample_mask(s, (h, w)), 256)

    sets = {}
    for ds, folder in DATASETS.items():
        if not (shared_root() / folder).exists():
            continue
        cat = load_dataset(shared_root() / folder)[0]
        train, val = [s.path for s in cat.train], [s.path for s in cat.validation]
        if not val:
            train, val = held_out(train, seed)
        sets[ds] = (train, val, [s.path for s in cat.test], np.array([s.label for s in cat.test]),
                    np.stack([mask(s) for s in cat.test]))
    return sets


def render(split: str, seed: int, rows: dict[str, dict[str, dict]]) -> str:
    title = (f"PatchCore on two backbones fused at the map level ({split} split, fit seed "
             f"{seed}; `benchmarks/patchcore_backbone_fusion.py`): image AUROC (smoothed-map max; "
             f"the backbone's own raw-max score in brackets) / pixel AUROC / AUPRO@0.3.")
    fits = [median_seconds(rows, b) for b in BACKBONES]
    return "\n".join([*fusion_table(title, rows, ROWS), "",
                      f"Median fit + scoring seconds per set: {fits[0]} (MobileNetV2), {fits[1]} "
                      f"(Lite0); the fusion costs both."])


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--split", choices=["validation", "test"], required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="results file (default benchmarks/RESULTS.md)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        sets = validation_sets(args.seed, tmp) if args.split == "validation" \
            else test_sets(args.seed)
        rows = {}
        for name, (fit, good, imgs, y, ms) in sets.items():
            rows[name] = fused_rows(fit, good, imgs, y, ms, args.seed)
            print(name, {r: round(v["image_auroc"], 4) for r, v in rows[name].items()},
                  file=sys.stderr, flush=True)
    body = render(args.split, args.seed, rows)
    section = ("selection-patchcore-fusion" if args.split == "validation"
               else "patchcore-fusion-test") + (f"-seed{args.seed}" if args.seed else "")
    write_section(section, body, args.out or DEFAULT_RESULTS)
    print(body)
    return body


if __name__ == "__main__":
    main()
