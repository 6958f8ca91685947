"""AnoOnly on images: ``anoonly-head`` with K labelled defects vs unsupervised PatchCore.

For each shared image set and K: K defective test images (drawn with the seed, masks used) join
the training set as labelled anomalies and are removed from the test split for **both** methods,
so both are scored on exactly the same images. The comparison is paired: PatchCore is fitted
with the heads' seed on the same good images (no hold-out: a head with labels holds none out),
so it is the head's own PatchCore prior and a difference is what the labels add, not another
coreset draw (on tire one draw against another moves PatchCore's image AUROC by up to 0.04).
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

from PIL import Image


def _gate_text(det) -> str:
    """The gate a fitted head uses: its quantile, or ``off``."""
    q = float(det.model_.head.gate_quantile)
    return "off" if q != q or not float(det.model_.head.gate_on) else f"{q:g}"


def _position_text(det) -> str:
    """The position weight of a fitted PatchCore or head (``-`` for files without one)."""
    head = det.model_.head
    return f"{float(head.position):g}" if getattr(head, "has_position", False) else "-"


def check_params(params: dict | None) -> None:
    """Refuse parameters the suite sets itself: the seed (``--seed``) and the hold-out (none, so
    PatchCore fits exactly the heads' good images)."""
    fixed = sorted({"seed", "holdout"} & set(params or {}))
    if fixed:
        from oddeye.errors import DataError

        raise DataError(f"--param {', '.join(fixed)}: set by the anoonly-image suite itself "
                        "(the seed with --seed; no hold-out, so PatchCore fits the heads' "
                        "images)")


def run(out_path: str | Path | None = None, ks: tuple[int, ...] = (5, 10), seed: int = 0,
        datasets: list[str] | None = None, params: dict | None = None,
        section: str | None = None) -> str:
    """Write section ``section`` of RESULTS.md and return it (default ``anoonly-image-cosine``,
    with ``-seed<S>`` for a seed other than 0: the heads' and PatchCore's cosine default since
    the twenty-eighth session; sections ``anoonly-image[-seed<S>]`` hold the raw-feature runs
    the docs quote). ``params``: method parameters given to PatchCore and
    both heads alike (e.g. ``{"grid": "last"}``), named in the text. ``seed`` draws the labelled
    defects and seeds the heads (PatchCore keeps its own default)."""
    params = dict(params or {})
    check_params(params)
    section = section or "anoonly-image-cosine" + (f"-seed{seed}" if seed else "")
    from oddeye.api import Detector
    from oddeye.bench.detection_suite import DATASETS, shared_root
    from oddeye.bench.results import DEFAULT_RESULTS, write_section
    from oddeye.commands._common import pick_shots
    from oddeye.data.mvtec import load_dataset, load_sample_mask
    from oddeye.evaluation import evaluate_category

    rows = []
    for ds in datasets or list(DATASETS):
        path = shared_root() / DATASETS[ds]
        if not path.exists():
            continue
        cat = load_dataset(path)[0]
        goods = [s.path for s in cat.train]
        val = [s.path for s in cat.validation] or None
        # PatchCore sees no labels: one fit per data set, scored on each K's reduced test split;
        # paired with the heads: their seed, every good image (they hold none out), and their
        # features (both default to ``cosine=True``; a test keeps the defaults equal)
        pc = Detector(method="patchcore", seed=seed, holdout=0.0, **params)
        with warnings.catch_warnings():  # no hold-out on purpose: the threshold is not compared
            warnings.filterwarnings("ignore", "too few good images to hold out")
            pc.fit(goods, validation=val, progress=False)
        pc_position = _position_text(pc)
        for k in ks:
            chosen = pick_shots([s for s in cat.test if s.label == 1], k, seed)
            exclude = {s.path for s in chosen}
            r_pc = evaluate_category(pc, cat, progress=False, exclude=exclude)
            masks: list = [None] * len(goods)  # at each image's own size; the fit resizes
            for s in chosen:
                with Image.open(s.path) as im:
                    w, h = im.size
                masks.append(load_sample_mask(s, (h, w)))
            res = {}
            for anoonly in (True, False):
                det = Detector(method="anoonly-head", anoonly=anoonly, seed=seed, **params)
                det.fit(goods + [s.path for s in chosen], labels=[0] * len(goods) + [1] * k,
                        masks=masks, validation=val, progress=False)
                res[anoonly] = evaluate_category(det, cat, progress=False, exclude=exclude)
                res[anoonly]["gate"] = _gate_text(det)
                res[anoonly]["position"] = _position_text(det)
            r_pc["position"] = pc_position
            rows.append((ds, k, r_pc, res[True], res[False]))
            print(f"{ds} K={k}: patchcore {r_pc['image_auroc']:.3f}/{r_pc['pixel_auroc']:.3f} "
                  f"anoonly {res[True]['image_auroc']:.3f}/{res[True]['pixel_auroc']:.3f} "
                  f"base {res[False]['image_auroc']:.3f}/{res[False]['pixel_auroc']:.3f} "
                  f"gates {res[True]['gate']} / {res[False]['gate']} positions {pc_position} / "
                  f"{res[True]['position']} / {res[False]['position']}",
                  file=sys.stderr, flush=True)
    lines = ["## AnoOnly on images: K labelled defects vs unsupervised PatchCore", "",
             f"Seed {seed}; the K labelled defects (with masks) are removed from the test split of "
             "every method. Paired: PatchCore is fitted with the heads' seed on the same good "
             "images (no hold-out) and features, so it is each head's own prior. Backbone "
             "mobilenet_v2 s8+s16 for all"
             + (f", parameters {json.dumps(params)} for all" if params else "")
             + ". Cells: image AUROC / pixel "
             "AUROC / AUPRO@0.3. Gate: the quantile of the learned term on held-out good patches "
             "above which it counts, as `gate=\"cv\"` chose it by leaving each labelled defect "
             "out (`off`: the whole term). Position: the weight `position=\"auto\"` chose "
             "(PatchCore on its training images; each head on its good images, for its "
             "PatchCore prior).", "",
             "| data | K | PatchCore (no labels) | anoonly-head (AnoOnly) | anoonly-head (base "
             "deviation loss) | gate (AnoOnly / base) | position (PatchCore / AnoOnly / base) |",
             "|---|---|---|---|---|---|---|"]

    def cell(r: dict) -> str:
        return f"{r['image_auroc']:.3f} / {r['pixel_auroc']:.3f} / {r['pixel_aupro']:.3f}"

    for ds, k, a, b, c in rows:
        lines.append(f"| {ds} | {k} | {cell(a)} | {cell(b)} | {cell(c)} | {b['gate']} / "
                     f"{c['gate']} | {a['position']} / {b['position']} / {c['position']} |")
    body = "\n".join(lines)
    write_section(section, body, out_path or DEFAULT_RESULTS)
    return body
