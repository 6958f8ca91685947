"""What flushing denormal floats saves in RD4AD training (timing; no test split used).

Each fit is the method's default (MobileNetV2 teacher, batch 16) for ``--epochs`` epochs on the
first ``--images`` good training images of a set, with denormals flushed (the library's
behaviour since this check) and without (``oddeye.methods.rd4ad.flush_denormals`` replaced by a
no-op), in alternating order, ``--repeats`` times. s/epoch: median over the epochs after the
first (which computes the teacher cache). The last loss and the largest score difference on
the fitting images say whether flushing changed the training. Writes section
``rd4ad-denormals``. Run: ``.venv/bin/python benchmarks/rd4ad_denormals.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

import oddeye.methods.rd4ad as rd4ad_module
from oddeye.api import Detector
from oddeye.bench.detection_suite import DATASETS, shared_root
from oddeye.bench.results import DEFAULT_RESULTS, write_section
from oddeye.data.mvtec import load_dataset
from oddeye.data.synth import generate


def fit_once(paths: list, epochs: int, flush: bool,
             params: dict) -> tuple[float, float, np.ndarray]:
    """(median s/epoch after the first, last loss, scores of the fitting images) of one fit."""
    saved = rd4ad_module.flush_denormals
    if not flush:
        rd4ad_module.flush_denormals = contextlib.nullcontext
    try:
        det = Detector(method="rd4ad", holdout=0, epochs=epochs, **params).fit(paths,
                                                                              progress=False)
    finally:
        rd4ad_module.flush_denormals = saved
    hist = det.model_.head.history
    return (statistics.median(hist[1:, 1].tolist()), float(hist[-1, 0]),
            det.predict(paths[:8]).scores)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="+", default=["noise", "nut", *DATASETS])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                    help="extra Detector parameter, e.g. device=cuda (value parsed as JSON)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    params = {}
    for kv in a.param:
        key, _, value = kv.partition("=")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    torch.set_num_threads(a.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        synthetic = [s for s in a.sets if s not in DATASETS]
        sets = {}
        if synthetic:
            root = generate(Path(tmp) / "s", seed=1, classes=synthetic, n_train=a.images,
                            n_test_good=2, n_test_defect=2)
            sets.update({f"synthetic/{c.name}": c for c in load_dataset(root)})
        for ds in (s for s in a.sets if s in DATASETS):
            if (shared_root() / DATASETS[ds]).exists():
                sets[ds] = load_dataset(shared_root() / DATASETS[ds])[0]
        for name, cat in sets.items():
            paths = [s.path for s in cat.train[:a.images]]
            runs: dict[bool, list] = {True: [], False: []}
            for r in range(a.repeats):
                for flush in ((True, False) if r % 2 == 0 else (False, True)):
                    runs[flush].append(fit_once(paths, a.epochs, flush, params))
                    print(name, flush, f"{runs[flush][-1][0]:.2f} s/epoch", flush=True)
            on, off = ([statistics.median(x[0] for x in runs[f]) for f in (True, False)])
            diff = max(float(np.abs(x[2] - y[2]).max()) for x in runs[True] for y in runs[False])
            rel = diff / max(1e-12, float(np.abs(runs[True][0][2]).max()))
            rows.append(f"| {name} | {len(paths)} | {off:.2f} | {on:.2f} | {off / on:.2f}x | "
                        f"{runs[False][0][1]:.4f} / {runs[True][0][1]:.4f} | {rel:.1e} |")
    lines = ["## RD4AD: training with denormal floats flushed", "",
             f"Method defaults{f' with {json.dumps(params)}' if params else ''}, {a.epochs} "
             f"epochs on the first {a.images} good training images, {a.threads} torch threads, "
             f"{a.repeats} fits each way in alternating order; s/epoch = median over the epochs "
             "after the first, then over the fits. Last loss off / on from the first fit of "
             "each; score difference: largest |off - on| over 8 fitting images and all pairs of "
             "fits, relative to the largest score.", "",
             "| set | images | s/epoch, denormals kept | s/epoch, flushed | speed-up | last loss "
             "off / on | score difference |",
             "|---|---|---|---|---|---|---|", *rows]
    write_section("rd4ad-denormals", "\n".join(lines), a.out or DEFAULT_RESULTS)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
