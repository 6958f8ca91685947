"""``oddeye synth``: write the synthetic defect data set (MVTec layout, exact masks)."""

from __future__ import annotations

import argparse

NAME = "synth"
HELP = "generate the synthetic defect data set (MVTec layout, exact masks)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from oddeye.data.synth import CLASSES, DEFECT_TYPES

    p.add_argument("--out", required=True, help="output folder (one sub-folder per class)")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of every image (default: %(default)s)")
    p.add_argument("--classes", nargs="+", metavar="C",
                   help=f"subset of classes: {', '.join(CLASSES)} (default: all)")
    p.add_argument("--size", type=int, metavar="N", default=256,
                   help="image side in pixels (default: %(default)s)")
    p.add_argument("--n-train", type=int, metavar="N", default=40,
                   help="good training images per class (default: %(default)s)")
    p.add_argument("--n-test-good", type=int, metavar="N", default=10,
                   help="good test images per class (default: %(default)s)")
    p.add_argument("--n-test-defect", type=int, metavar="N", default=4,
                   help="defective test images per class and defect type (default: %(default)s)")
    p.add_argument("--defects", nargs="+", metavar="D",
                   help=f"subset of defect types: {', '.join(DEFECT_TYPES)} (default: all)")


def names(values: list[str] | None) -> list[str] | None:
    """``--classes`` / ``--defects`` values, comma-separated ones split (as the API takes
    ``"grid,disc"``), repeats dropped in order."""
    if values is None:
        return None
    return list(dict.fromkeys(n.strip() for v in values for n in v.split(",") if n.strip()))


def run(args: argparse.Namespace) -> int:
    from oddeye.commands._common import check_output_dir
    from oddeye.data.synth import CLASSES, generate

    check_output_dir(args.out, "--out")  # a file in the way is one line, not a traceback
    classes = names(args.classes)
    root = generate(args.out, seed=args.seed, classes=classes, n_train=args.n_train,
                    n_test_good=args.n_test_good, n_test_defect=args.n_test_defect, size=args.size,
                    defects=names(args.defects))
    print(f"wrote synthetic classes {', '.join(classes or CLASSES)} to {root}")
    return 0
