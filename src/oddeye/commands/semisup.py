"""``oddeye semisup``: evaluate a semi-supervised detector on ADBench-style ``.npz`` data sets."""

from __future__ import annotations

import argparse
import time

import numpy as np

from oddeye.commands._common import int_at_least

NAME = "semisup"
HELP = "evaluate a semi-supervised detector (few labelled anomalies) on .npz feature data sets"
DESCRIPTION = (
    "Runs the ADBench protocol (stratified 70/30 split, a share of the training anomalies "
    "labelled, standardised features, several seeds) with one detector on one .npz file or every "
    ".npz under a folder, and reports test AUROC and AUPR per data set and on average."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``oddeye semisup``."""
    from oddeye.semisup import SEMISUP_METHODS

    parser.add_argument("--data", required=True, metavar="FILE_OR_DIR",
                        help=".npz file with arrays X and y (1 = anomaly), or a folder of them")
    parser.add_argument("--method", default="devnet", choices=sorted(SEMISUP_METHODS),
                        help="detector (default: devnet)")
    parser.add_argument("--anoonly", action="store_true",
                        help="AnoOnly: loss on labelled anomalies only, BatchNorm before scoring")
    parser.add_argument("--labeled", type=float, default=0.1,
                        help="share of the training anomalies that are labelled (default 0.1)")
    parser.add_argument("--seeds", type=int_at_least(1), default=3,
                        help="number of seeds, 0..N-1 (default 3)")
    parser.add_argument("--contamination", type=float, default=None,
                        help="share of anomalies among the unlabelled training data, e.g. 0.05 "
                             "(default: the data set's own)")
    parser.add_argument("--threads", type=int_at_least(0, " (0: torch's choice)"), default=1,
                        help="torch CPU threads (default 1: these networks are small, more threads "
                             "mostly add synchronisation cost; 0 = torch's choice)")
    parser.add_argument("--json", default=None, metavar="FILE", help="write the results as JSON")


def format_table(per_dataset: dict[str, dict], mean_auroc: float, mean_aupr: float) -> str:
    """A plain-text table: one row per data set and the mean."""
    width = max([len("mean"), *(len(n) for n in per_dataset)])
    lines = [f"{'data set':<{width}}  {'group':<9}  {'AUROC':>6}  {'AUPR':>6}  {'fit s':>7}"]
    for name, r in per_dataset.items():
        lines.append(f"{name:<{width}}  {r['group']:<9}  {100 * r['auroc']:6.1f}  "
                     f"{100 * r['aupr']:6.1f}  {r['seconds']:7.2f}")
    lines.append(f"{'mean':<{width}}  {'':<9}  {100 * mean_auroc:6.1f}  {100 * mean_aupr:6.1f}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, optionally write JSON; returns the exit code."""
    import torch

    from oddeye.commands._common import check_output_file, write_json
    from oddeye.errors import DataError
    from oddeye.semisup import SEMISUP_METHODS
    from oddeye.semisup.protocol import dataset_names, find_npz, run_dataset

    if args.json:
        check_output_file(args.json, "--json", {"--data": args.data})
    if args.anoonly and not SEMISUP_METHODS[args.method].uses_labels:
        raise DataError(f"--anoonly: '{args.method}' is unsupervised and has no AnoOnly variant")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    files = find_npz(args.data)
    names = dataset_names(files, args.data)
    seeds = list(range(args.seeds))
    per_dataset: dict[str, dict] = {}
    t0 = time.perf_counter()
    for path, name in zip(files, names, strict=True):
        res = run_dataset(path, args.method, args.anoonly, seeds, args.labeled, args.contamination)
        res["name"] = name  # unique: same-named files in different folders keep their own row
        per_dataset[name] = res
    mean_auroc = float(np.mean([r["auroc"] for r in per_dataset.values()]))
    mean_aupr = float(np.mean([r["aupr"] for r in per_dataset.values()]))
    label = f"{args.method}{' +AnoOnly' if args.anoonly else ''}"
    print(f"{label}: {len(files)} data set(s), seeds {seeds}, labelled {args.labeled:g}, "
          f"contamination {'natural' if args.contamination is None else args.contamination}")
    print(format_table(per_dataset, mean_auroc, mean_aupr))
    if args.json:
        out = {"method": args.method, "anoonly": bool(args.anoonly), "labeled": args.labeled,
               "seeds": seeds, "contamination": args.contamination, "data": str(args.data),
               "mean_auroc": mean_auroc, "mean_aupr": mean_aupr,
               "seconds_total": time.perf_counter() - t0, "per_dataset": per_dataset}
        print(f"wrote {write_json(args.json, out)}")
    return 0
