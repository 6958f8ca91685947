"""``oddeye synth``: write the synthetic defect data set (MVTec layout, exact masks)."""

from __future__ import annotations

import argparse

NAME = "synth"
HELP = "generate the synthetic defect data set (MVTec layout, exact masks)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--classes", nargs="+", help="subset of classes (default: all)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--n-train", type=int, default=40)
    p.add_argument("--n-test-good", type=int, default=10)
    p.add_argument("--n-test-defect", type=int, default=4, help="per defect type")
    p.add_argument("--defects", nargs="+", help="subset of defect types (default: all)")


def run(args: argparse.Namespace) -> int:
    from oddeye.data.synth import CLASSES, generate

    root = generate(args.out, seed=args.seed, classes=args.classes, n_train=args.n_train,
                    n_test_good=args.n_test_good, n_test_defect=args.n_test_defect, size=args.size,
                    defects=args.defects)
    print(f"wrote synthetic classes {', '.join(args.classes or CLASSES)} to {root}")
    return 0
