"""``oddeye test``: the metric table of a model on MVTec-layout test splits."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from oddeye.commands._common import add_device_flag, add_progress_flag, write_json

NAME = "test"
HELP = "evaluate a model on test splits (image/pixel AUROC, AP, F1-max, AUPRO@0.3)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model file (.oddeye)")
    p.add_argument("--data", nargs="+", required=True, metavar="DIR", help="data set root(s)")
    p.add_argument("--category", nargs="+", metavar="C", help="only these categories")
    p.add_argument("--json", metavar="FILE", help="write the metrics as JSON")
    p.add_argument("--report", metavar="DIR", help="write an HTML report to DIR")
    p.add_argument("--shots", type=int, help="reference shots for few-shot methods (e.g. resad)")
    p.add_argument("--seed", type=int, default=0, help="seed for drawing reference shots")
    add_device_flag(p)
    add_progress_flag(p)


def run(args: argparse.Namespace) -> int:
    import oddeye
    from oddeye.commands._common import pick_shots
    from oddeye.data.mvtec import load_dataset
    from oddeye.evaluation import evaluate_category, format_by_type, format_table, mean_metrics

    det = oddeye.load(args.model, device=args.device)
    excluded = set(det.meta_["train"].get("labelled_defects") or [])
    datasets = []
    for root in args.data:
        datasets += load_dataset(root, args.category)
    per_cat, details, refs_used = {}, {}, {}
    t0 = time.perf_counter()
    for cat in datasets:
        if getattr(det, "needs_references", False):
            refs = pick_shots([s.path for s in cat.train], args.shots or 4, args.seed)
            det.set_references(refs)
            refs_used[cat.name] = [str(r) for r in refs]
        d: dict = {}
        per_cat[cat.name] = evaluate_category(det, cat, progress=not args.no_progress,
                                              exclude={Path(p) for p in excluded}, details=d)
        details[cat.name] = d
    print(format_table(per_cat))
    by_type = format_by_type(per_cat)
    if by_type:
        print(by_type)
    if excluded:
        print(f"note: {len(excluded)} labelled defect images used for training were excluded")
    if det.fit_choices_:
        print(f"model: {det.fit_choices_}")
    result = {**mean_metrics(per_cat), "seconds": time.perf_counter() - t0,
              "per_category": per_cat, "model": str(args.model), "method": det.method,
              "excluded_training_defects": sorted(excluded), "fit_choices": det.fit_choices_}
    if refs_used:
        result["references"] = {"shots": args.shots or 4, "seed": args.seed, "files": refs_used}
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    if args.report:
        from oddeye.report.html import write_test_report

        path = write_test_report(args.report, det, per_cat, details)
        print(f"wrote report {path}")
    return 0
