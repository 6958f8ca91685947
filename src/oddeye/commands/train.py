"""``oddeye train``: fit a detector on the good images of one or more categories."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from oddeye.commands._common import (
    add_device_flag,
    add_progress_flag,
    check_output_file,
    coerce_list_params,
    load_categories,
    parse_params,
    pick_shots,
)
from oddeye.errors import DataError

NAME = "train"
HELP = "fit a model on good images (MVTec-layout folders)"
DESCRIPTION = (
    "Fit a model on train/good of each category. --out NAME.oddeye writes one model file (one "
    "unified model when there are several categories); any other --out is a folder that gets one "
    "model per category, DIR/<category>.oddeye, also for a single category. Categories of the "
    "same name under different --data roots are named by their path tails (data-grid.oddeye, "
    "data2-grid.oddeye)."
)

#: Detector arguments this command sets from its own options: ``--param`` may not set them.
FLAG_PARAMS = {"method": "--method", "backbone": "--backbone", "weights": "--weights",
               "size": "--size", "sigma": "--sigma", "pad": "--pad",
               "batch_size": "--batch-size", "seed": "--seed", "device": "--device",
               "map_norm": "--map-norm"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", required=True, metavar="DIR",
                   help="data set root(s): a category folder or a folder of categories")
    p.add_argument("--category", nargs="+", metavar="C", help="only these categories")
    p.add_argument("--method", default="patchcore", help="method name (see `oddeye methods`)")
    p.add_argument("--backbone", help="backbone name (default: the method's); names joined by "
                                      "'+' fuse those backbones' maps (patchcore, padim; "
                                      "docs/methods.md)")
    p.add_argument("--weights", default="auto", help="backbone weight file (default: resolve)")
    p.add_argument("--out", required=True,
                   help="NAME.oddeye: one model file; anything else: a folder that gets one "
                        "<category>.oddeye per category (checked before training)")
    p.add_argument("--shots", type=int, metavar="K",
                   help="fit on K good images per category, drawn with --seed; without "
                        "validation/good, 10%% of them (at least 2, when K >= 10) are held out "
                        "for the threshold, so the fit sees fewer (the summary line says so)")
    p.add_argument("--seed", type=int, default=0, help="seed for shots, holdout and the method")
    p.add_argument("--size", type=int, default=256, help="input size (square, no crop)")
    p.add_argument("--sigma", type=float, default=4.0, help="Gaussian sigma of the map")
    p.add_argument("--pad", type=int, default=None, metavar="PX",
                   help="frame the image in its mean colour by PX pixels before the backbone "
                        "(a multiple of the taps' strides; default: the Detector's)")
    p.add_argument("--batch-size", type=int, default=4)
    add_device_flag(p)
    p.add_argument("--labeled-defects", type=int, default=0, metavar="K",
                   help="semi-supervised heads: K labelled defective images per category, drawn "
                        "from test/ with --seed and excluded from `oddeye test` afterwards")
    p.add_argument("--map-norm", choices=["none", "position"], default="none",
                   help="'position': standardise maps per position with good images the model "
                        "does not train on (validation/good, else a held-out share); see "
                        "docs/methods.md before using it")
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="method hyper-parameter (repeatable), e.g. --param coreset_ratio=0.05; "
                        "lists as JSON or comma-separated (--param layers=s8,s16); options that "
                        "have their own flag (size, seed, device, ...) are refused here")
    add_progress_flag(p)


def collect(args: argparse.Namespace, datasets: list) -> dict:
    """Training material of the given categories: paths, categories, labels, validation.

    ``mask_samples`` is aligned with ``paths``: None for good images, the Sample of a labelled
    defective image (its mask is read later, at the image's size).
    """
    paths, cats, labels, mask_samples, val, labelled = [], [], [], [], [], []
    for cat in datasets:
        goods = pick_shots([s.path for s in cat.train], args.shots, args.seed)
        paths += goods
        cats += [cat.name] * len(goods)
        labels += [0] * len(goods)
        mask_samples += [None] * len(goods)
        val += [s.path for s in cat.validation]
        if args.labeled_defects:
            chosen = pick_shots([s for s in cat.test if s.label == 1], args.labeled_defects,
                                args.seed, flag="--labeled-defects",
                                what=f"defective test images in category {cat.name!r}")
            # absolute and resolved: `oddeye test` finds them from any folder, by any spelling
            labelled += [str(s.path.resolve()) for s in chosen]
            paths += [s.path for s in chosen]
            cats += [cat.name] * len(chosen)
            labels += [1] * len(chosen)
            mask_samples += chosen
    return {"paths": paths, "categories": cats, "labels": labels, "validation": val,
            "labelled": labelled, "mask_samples": mask_samples}


def method_params(args: argparse.Namespace) -> dict:
    """The method's ``--param`` values, checked before any data is read or model fitted."""
    from oddeye.methods import get_method

    params = coerce_list_params(args.method, parse_params(args.param, reserved=FLAG_PARAMS))
    needs_labels = get_method(args.method).needs_labels
    if needs_labels and not args.labeled_defects:
        raise DataError(f"method {args.method!r} needs --labeled-defects K (K >= 1)")
    if args.labeled_defects and not needs_labels:  # they would join its good images unlabelled
        raise DataError(f"method {args.method!r} learns from good images only; "
                        "--labeled-defects is for methods such as 'anoonly-head'")
    return params


def unified_validation(datasets: list, validation: list) -> list:
    """The validation images a fit of ``datasets`` uses: all of them, unless they cover only
    some of several categories; then none (with a note), so the fit holds out a share of every
    category's training images: one threshold for several categories from the good images of
    some would flag the others' good parts, or pass their defects, by their scale alone."""
    have = sorted({d.name for d in datasets if d.validation})
    if not validation or len(datasets) < 2 or len(have) == len(datasets):
        return validation
    print(f"note: validation/good exists for {', '.join(have)} only of {len(datasets)} "
          f"categories; the threshold of a model of several categories comes from good images "
          f"of each, so a share of every category's training images is held out instead",
          file=sys.stderr)
    return []


def fit_one(args: argparse.Namespace, datasets: list, out: Path,
            params: dict | None = None) -> Path:
    """Fit one model on ``datasets`` and save it to ``out``; prints a one-line summary."""
    from oddeye.api import Detector
    from oddeye.methods import get_method

    params = dict(method_params(args) if params is None else params)
    if args.map_norm != "none":
        params["map_norm"] = args.map_norm
    if args.pad is not None:
        params["pad"] = args.pad
    det = Detector(method=args.method, backbone=args.backbone, size=args.size, sigma=args.sigma,
                   device=args.device,
                   weights=args.weights, batch_size=args.batch_size, seed=args.seed, **params)
    needs_labels = get_method(args.method).needs_labels
    mat = collect(args, datasets)
    fit_kw = {}
    if needs_labels:
        fit_kw["labels"] = mat["labels"]
        from PIL import Image

        from oddeye.data.mvtec import load_sample_mask

        ms = []  # at each image's own size (None: no mask); the fit resizes them
        for p, s in zip(mat["paths"], mat["mask_samples"], strict=True):
            if s is None:
                ms.append(None)
                continue
            with Image.open(p) as im:
                w, h = im.size
            ms.append(load_sample_mask(s, (h, w)))
        fit_kw["masks"] = ms
    # a labelled fit holds nothing out: it keeps whatever validation images there are
    val = mat["validation"] if needs_labels else unified_validation(datasets, mat["validation"])
    det.fit(mat["paths"], validation=val or None, categories=mat["categories"],
            progress=not args.no_progress, **fit_kw)
    extra = {"data": [str(d.root) for d in datasets], "shots": args.shots, "seed": args.seed,
             "labelled_defects": mat["labelled"]}
    path = det.save(out, extra=extra)
    names = ", ".join(d.name for d in datasets)
    held = len(mat["paths"]) - det.n_train_
    held_text = f" (+{held} held out for the threshold)" if held > 0 else ""
    print(f"trained {args.method} on {det.n_train_} images{held_text} of {names} "
          f"in {det.fit_seconds_:.1f} s; threshold {det.threshold_:.4g} "
          f"({det.threshold_info_['source']}); saved {path}")
    if det.fit_choices_:
        print(f"  {det.fit_choices_}")
    return path


def plan_outputs(out: str | Path, datasets: list) -> list[tuple[list, Path]]:
    """(categories, model file) of each fit: ``NAME.oddeye`` is one file for all categories,
    any other ``--out`` a folder with one ``<category>.oddeye`` per category. Refuses, before
    any fit, an ``--out`` whose existing file or folder would make the save fail, or that lies
    where nothing can be written (``check_output_file`` on every model path: a fit can take
    hours, its save must not be the first thing to fail). The suffix is matched in any case, as
    ``calibrate`` and the loaders match it."""
    if str(out).strip() == "":  # Path("") would be the working folder
        raise DataError("--out: empty name; give NAME.oddeye or a folder")
    out = Path(out)
    if out.suffix.lower() == ".oddeye":
        if out.is_dir():
            raise DataError(f"--out {out} is an existing folder; a name ending in .oddeye is "
                            "one model file (give a folder name without .oddeye for one model "
                            "per category)")
        check_output_file(out, "--out")
        return [(datasets, out)]
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is an existing file, but an --out without the .oddeye "
                        "suffix is a folder that gets one model per category; give "
                        "NAME.oddeye for one model file")
    jobs = []
    for cat in datasets:
        path = out / f"{cat.name.replace('/', '-')}.oddeye"
        if path.is_dir():
            raise DataError(f"{path} is an existing folder; cannot save the model there")
        check_output_file(path, "--out")
        jobs.append(([cat], path))
    return jobs


def run(args: argparse.Namespace) -> int:
    params = method_params(args)
    datasets = load_categories(args.data, args.category)
    jobs = plan_outputs(args.out, datasets)
    for group, _ in jobs:  # --shots and --labeled-defects checked for every category first
        collect(args, group)
    for _, path in jobs:  # said before the fits, not after an hour of them
        if path.exists():
            print(f"oddeye train: {path} exists and will be replaced when its fit ends",
                  file=sys.stderr)
    for group, path in jobs:
        path.parent.mkdir(parents=True, exist_ok=True)
        fit_one(args, group, path, params)
    return 0
