"""Test splits of RD4AD with both stage weightings, reported after the validation choice
(``rd4ad_stage_weights_selection.py``), never used to make it: one fit per category (or one
unified fit with ``--unified``) with ``stage_weights="spread"``, scored as it is and with its
offsets and scales reset to 0 and 1, which is the ``equal`` model (the paper's sum) exactly:
the weighting is set after training. Writes section ``rd4ad-stage-weights`` (``-unified``,
``-seed<S>``) of benchmarks/RESULTS.md. Run: ``.venv/bin/python
benchmarks/rd4ad_stage_weights_test_split.py [--unified] [--seed S] [--datasets ...]``.
"""

import argparse
import time

import torch

from oddeye.api import Detector
from oddeye.bench.detection_suite import DATASETS
from oddeye.bench.rd4ad_suite import _categories
from oddeye.bench.results import DEFAULT_RESULTS, write_section
from oddeye.evaluation import evaluate_category

KEYS = ("image_auroc", "pixel_auroc", "pixel_aupro")


def both_ways(det: Detector, cats: list) -> dict:
    """{weighting: {category: metrics}} of one fitted ``spread`` model."""
    head = det.model_.head
    stats = (head.stage_offset.clone(), head.stage_scale.clone())
    out = {"spread": {c.name: evaluate_category(det, c, progress=False) for c in cats}}
    head.stage_offset, head.stage_scale = torch.zeros_like(stats[0]), torch.ones_like(stats[1])
    try:
        out["equal"] = {c.name: evaluate_category(det, c, progress=False) for c in cats}
    finally:
        head.stage_offset, head.stage_scale = stats
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    ap.add_argument("--unified", action="store_true", help="one model over every data set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows: dict[str, dict] = {"equal": {}, "spread": {}}
    scales: dict[str, list] = {}
    fit_s: dict[str, float] = {}
    groups = [args.datasets] if args.unified else [[d] for d in args.datasets]
    for group in groups:
        cats = _categories(group)
        paths = [s.path for c in cats for s in c.train]
        val = [s.path for c in cats for s in c.validation] or None
        t0 = time.perf_counter()
        det = Detector(method="rd4ad", stage_weights="spread", seed=args.seed)
        det.fit(paths, validation=val, progress=False,
                categories=[c.name for c in cats for _ in c.train] if args.unified else None)
        name = "unified" if args.unified else cats[0].name
        fit_s[name] = time.perf_counter() - t0
        head = det.model_.head
        scales[name] = [f"{float(o):.3f} / {float(1 / s):.3f}"
                        for o, s in zip(head.stage_offset, head.stage_scale, strict=True)]
        for weighting, per in both_ways(det, cats).items():
            rows[weighting].update(per)
        print(name, {w: {c: [round(rows[w][c][k], 3) for k in KEYS] for c in rows[w]}
                     for w in rows}, flush=True)
    cats = list(rows["equal"])
    models = ("one unified model over " + ", ".join(args.datasets) if args.unified
              else "one model per category")
    lines = ["## RD4AD stage weights on the test splits (reported, not used to choose)", "",
             f"Seed {args.seed}; {models}, default "
             "settings with `stage_weights=\"spread\"`, each fit scored twice: as fitted, and "
             "with its stage offsets and scales reset to 0 and 1, which is the `equal` model "
             "(the paper's plain sum) exactly. Cells: image AUROC / pixel AUROC / AUPRO@0.3.",
             "", "| weighting | " + " | ".join(cats) + " |", "|---|" + "---|" * len(cats)]
    for w, label in (("equal", "equal (default, the paper's sum)"),
                     ("spread", "spread (each stage standardised)")):
        lines.append(f"| {label} | " + " | ".join(
            " / ".join(f"{rows[w][c][k]:.3f}" for k in KEYS) for c in cats) + " |")
    lines += ["", "Each stage's mean / standard deviation of `1 - cos` over the training images "
              "(finest stage first) and the fit's seconds:", ""]
    lines += [f"- {n}: {', '.join(v)}; fit {fit_s[n]:.0f} s" for n, v in scales.items()]
    section = ("rd4ad-stage-weights" + ("-unified" if args.unified else "")
               + (f"-seed{args.seed}" if args.seed else ""))
    write_section(section, "\n".join(lines), DEFAULT_RESULTS)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
