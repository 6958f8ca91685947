"""``oddeye demo``: the whole product on the embedded synthetic data, in a few minutes.

Generates the synthetic set, trains one PatchCore model per class, tests it, predicts a few images
and writes an HTML report (metric table, curves, histograms, best and worst cases).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from oddeye.commands._common import add_device_flag

NAME = "demo"
HELP = "generate synthetic data, train, test, predict and write an HTML report"
DEMO_CLASSES = ("grid", "wood", "disc")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--method", default="patchcore",
                   help="a method that learns from good images alone (see `oddeye methods`; "
                        "default: patchcore)")
    p.add_argument("--backbone", help="backbone (default: the method's)")
    p.add_argument("--classes", nargs="+", default=list(DEMO_CLASSES),
                   help=f"synthetic classes (default: {' '.join(DEMO_CLASSES)})")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the fit (default: 0)")
    add_device_flag(p)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def check_method(name: str) -> None:
    """Refuse, before any work, a method the demo cannot run: it has no labelled defects to
    train on and no reference shots to test with, so only good-images-only methods fit."""
    from oddeye.errors import OddeyeError
    from oddeye.methods import available_methods, get_method

    cls = get_method(name)  # unknown names: one line listing the known ones
    needs = [what for what, flag in (("labelled defects", cls.needs_labels),
                                     ("reference shots", cls.needs_references)) if flag]
    if needs:
        ok = [m for m in available_methods()
              if not (get_method(m).needs_labels or get_method(m).needs_references)]
        raise OddeyeError(f"method {name!r} needs {' and '.join(needs)}, which the demo does "
                          f"not provide; the demo runs {', '.join(ok)} (fit {name} with "
                          "`oddeye train`)")


def run(args: argparse.Namespace) -> int:
    from oddeye.api import Detector
    from oddeye.commands._common import write_json
    from oddeye.data.mvtec import load_dataset
    from oddeye.data.synth import generate
    from oddeye.evaluation import evaluate_category, format_table, mean_metrics
    from oddeye.report.html import write_test_report

    check_method(args.method)
    t0 = time.perf_counter()
    out = Path(args.out)
    progress = not args.no_progress
    print(f"[1/4] generating synthetic data ({', '.join(args.classes)}) in {out / 'data'}")
    generate(out / "data", seed=args.seed, classes=args.classes, n_train=40, n_test_good=10,
             n_test_defect=3, size=256)
    cats = load_dataset(out / "data")
    detectors, per_cat, details = {}, {}, {}
    for cat in cats:
        print(f"[2/4] training {args.method} on {cat.name} ({len(cat.train)} good images)")
        det = Detector(method=args.method, backbone=args.backbone, seed=args.seed,
                       device=args.device)
        det.fit([s.path for s in cat.train], categories=[cat.name] * len(cat.train),
                progress=progress)
        det.save(out / "models" / f"{cat.name}.oddeye")
        detectors[cat.name] = det
        print(f"[3/4] testing {cat.name} ({len(cat.test)} images)")
        d: dict = {}
        per_cat[cat.name] = evaluate_category(det, cat, progress=progress, details=d)
        details[cat.name] = d
    print(format_table(per_cat))
    write_json(out / "metrics.json", {**mean_metrics(per_cat), "per_category": per_cat})
    print("[4/4] predicting and writing the report")
    from oddeye.commands import predict as predict_cmd

    first = cats[0]
    sample = [str(s.path) for s in first.test[:: max(1, len(first.test) // 6)]]
    # through predict's own parser, so every option it has gets its default
    pp = argparse.ArgumentParser()
    predict_cmd.add_arguments(pp)
    predict_cmd.run(pp.parse_args(["--model", str(out / "models" / f"{first.name}.oddeye"),
                                   *sample, "--out", str(out / "predictions"),
                                   "--device", args.device]))
    report = write_test_report(out / "report", detectors, per_cat, details,
                               title="oddeye demo: synthetic defects")
    print(f"done in {time.perf_counter() - t0:.0f} s. Open {report.resolve()}")
    return 0
