"""``oddeye test``: the metric table of a model on MVTec-layout test splits."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from oddeye.commands._common import (
    add_device_flag,
    add_progress_flag,
    check_output_dir,
    check_output_file,
    int_at_least,
    write_json,
)

NAME = "test"
HELP = "evaluate a model on test splits (image/pixel AUROC, AP, F1-max, AUPRO@0.3)"
DESCRIPTION = (
    "Score a model on test/ (masks in ground_truth/) of each category; train/good is read only "
    "for models that score against reference shots (e.g. resad). Unreadable images or masks, and "
    "masks whose size is not their image's, are reported one line each on stderr, left out, and "
    "listed under 'skipped' in --json; a category none of whose images can be scored is reported "
    "and left out too. The exit status is 0 when at least one category was scored, 2 otherwise. "
    "Categories of the same name under different --data roots are named by their path tails "
    "(data/grid, data2/grid)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model file (.oddeye)")
    p.add_argument("--data", nargs="+", required=True, metavar="DIR", help="data set root(s)")
    p.add_argument("--category", nargs="+", metavar="C", help="only these categories")
    p.add_argument("--json", metavar="FILE", help="write the metrics as JSON")
    p.add_argument("--report", metavar="DIR", help="write an HTML report to DIR")
    p.add_argument("--shots", type=int_at_least(1),
                   help="reference shots for few-shot methods (e.g. resad; default 4); refused "
                        "for a model that uses none")
    p.add_argument("--seed", type=int, default=0, help="seed for drawing reference shots")
    add_device_flag(p)
    add_progress_flag(p)


def _path_parts(path: str) -> tuple[str, ...]:
    """The parts of a relative path without leading ``.``/``..`` (for suffix matching)."""
    parts = Path(path).parts
    while parts and parts[0] in (".", ".."):
        parts = parts[1:]
    return parts


def match_excluded(recorded: list[str], datasets: list
                   ) -> tuple[dict[str, set], list[str], list[str]]:
    """Test images of ``datasets`` that are the recorded labelled training defects.

    Returns ``({category name: set of Sample.path to leave out}, recorded paths not found,
    recorded paths whose trailing parts matched several test images)``.
    Paths are compared resolved, so ``data/grid`` and ``/abs/data/grid`` are the same images.
    Files written before the paths were stored absolute may hold relative ones (relative to the
    folder training ran in): those are resolved against the current folder first, and else
    matched by their trailing path parts (``data/grid/test/crack/000.png``), best effort: a
    short tail (a model trained with ``--data .``) can match the same-named image of several
    categories; all of them are left out (never scoring a training image) and the path is
    returned as ambiguous, so the caller can say so.
    """
    resolved = {str(s.path.resolve()): (cat.name, s.path) for cat in datasets for s in cat.test}
    out: dict[str, set] = {cat.name: set() for cat in datasets}
    missing, ambiguous = [], []
    for rec in recorded:
        hits = []
        key = str(Path(rec).resolve())
        if key in resolved:
            hits = [resolved[key]]
        elif not Path(rec).is_absolute() and (tail := _path_parts(rec)):
            hits = [v for k, v in resolved.items() if Path(k).parts[-len(tail):] == tail]
        if not hits:
            missing.append(rec)
        elif len(hits) > 1:
            ambiguous.append(rec)
        for name, path in hits:
            out[name].add(path)
    return out, missing, ambiguous


def report_notes(excluded: list[str], skipped: list[dict], failed: dict[str, str],
                 refs_used: dict[str, list[str]], args: argparse.Namespace) -> list[str]:
    """What the HTML report must say besides its figures, as the console and the JSON do."""
    notes = []
    if excluded:
        notes.append(f"{len(excluded)} labelled defect images the model was trained on were "
                     f"removed from the test split: {', '.join(Path(p).name for p in excluded[:5])}"
                     f"{', ...' if len(excluded) > 5 else ''}")
    if skipped:
        notes.append(f"{len(skipped)} unreadable test file(s) skipped: "
                     f"{', '.join(Path(s['path']).name for s in skipped[:5])}"
                     f"{', ...' if len(skipped) > 5 else ''}")
    notes += [f"category {name} not scored: {why}" for name, why in failed.items()]
    if refs_used:
        notes.append(f"reference shots: {args.shots or 4} good training images per category, "
                     f"drawn with seed {args.seed}")
    return notes


def run(args: argparse.Namespace) -> int:
    import oddeye
    from oddeye.commands._common import load_categories, pick_shots
    from oddeye.errors import DataError, OddeyeError
    from oddeye.evaluation import evaluate_category, format_by_type, format_table, mean_metrics

    if args.json:  # output paths first: a bad one must not cost the whole evaluation
        check_output_file(args.json, "--json", {"--model": args.model})
    if args.report:
        check_output_dir(args.report, "--report")
    det = oddeye.load(args.model, device=args.device)
    recorded = list(det.meta_["train"].get("labelled_defects") or [])
    needs_refs = getattr(det, "needs_references", False)
    if not needs_refs and args.shots is not None:  # as predict refuses --refs for such a model
        raise DataError(f"--shots: model {args.model} ({det.method}) does not use reference "
                        f"shots; drop --shots")
    # test-only folders are found for every model; one without train/good cannot give a
    # reference-shot model its shots, which is reported below instead of the folder vanishing
    datasets = load_categories(args.data, args.category, require_train=False)
    exclude, not_found, ambiguous = match_excluded(recorded, datasets)
    per_cat, details, refs_used, failed = {}, {}, {}, {}
    skipped: list[dict] = []
    t0 = time.perf_counter()
    for cat in datasets:
        if needs_refs and not cat.train:
            failed[cat.name] = (f"no train/good images to draw the {args.shots or 4} reference "
                                f"shots from")
            print(f"category {cat.name} not scored: {failed[cat.name]}", file=sys.stderr)
            continue
        if needs_refs:
            refs = pick_shots([s.path for s in cat.train], args.shots or 4, args.seed)
            det.set_references(refs)
            refs_used[cat.name] = [str(r) for r in refs]
        d: dict = {}
        n_before = len(skipped)
        try:
            per_cat[cat.name] = evaluate_category(det, cat, progress=not args.no_progress,
                                                  exclude=exclude[cat.name], details=d,
                                                  skipped=skipped)
            details[cat.name] = d
        except DataError as exc:  # nothing of this category scored: the others still count
            failed[cat.name] = str(exc)
        for item in skipped[n_before:]:
            item["category"] = cat.name
            print(f"skipped: {item['error']}", file=sys.stderr)
        if cat.name in failed:
            print(f"category {cat.name} not scored: {failed[cat.name]}", file=sys.stderr)
    if per_cat:
        print(format_table(per_cat))
        by_type = format_by_type(per_cat)
        if by_type:
            print(by_type)
    excluded = sorted(str(p.resolve()) for paths in exclude.values() for p in paths)
    if recorded:
        print(f"note: {len(excluded)} labelled defect images used for training were excluded")
    if not_found:
        print(f"oddeye test: warning: {len(not_found)} of the {len(recorded)} labelled defect "
              f"images the model was trained on are not among these test images, so could not "
              f"be excluded (first: {not_found[0]})", file=sys.stderr)
    if ambiguous:
        print(f"oddeye test: warning: {len(ambiguous)} labelled defect path(s) recorded "
              f"relative to the training folder match several test images; all of them were "
              f"excluded (first: {ambiguous[0]})", file=sys.stderr)
    if skipped:
        print(f"oddeye test: warning: {len(skipped)} unreadable test file(s) skipped (listed "
              f"above)", file=sys.stderr)
    if det.fit_choices_:
        print(f"model: {det.fit_choices_}")
    result = {**mean_metrics(per_cat), "seconds": time.perf_counter() - t0,
              "per_category": per_cat, "model": str(args.model), "method": det.method,
              "excluded_training_defects": excluded,
              "excluded_training_defects_not_found": not_found,
              "excluded_training_defects_ambiguous": ambiguous,
              "skipped": skipped, "failed_categories": failed,
              "fit_choices": det.fit_choices_}
    if refs_used:
        result["references"] = {"shots": args.shots or 4, "seed": args.seed, "files": refs_used}
    if args.json:
        write_json(args.json, result)
        print(f"wrote {args.json}")
    if args.report and per_cat:
        from oddeye.report.html import write_test_report

        try:
            path = write_test_report(args.report, det, per_cat, details,
                                     notes=report_notes(excluded, skipped, failed, refs_used,
                                                        args),
                                     references=refs_used or None)
        except OSError as exc:  # checked up front; this is the last resort (e.g. disk full)
            raise DataError(f"--report {args.report}: cannot write ({exc.strerror or exc})"
                            ) from None
        print(f"wrote report {path}")
    if not per_cat:
        raise OddeyeError(f"no test image could be scored in {len(datasets)} categor"
                          f"{'y' if len(datasets) == 1 else 'ies'} (reasons above)")
    return 0
