"""``oddeye methods``: the registered methods, what each is, and what it needs to train and test."""

from __future__ import annotations

import argparse

NAME = "methods"
HELP = ("list the methods (name, description, whether they need labels or reference shots, "
        "whether they fuse backbones)")
DESCRIPTION = (
    "List the registered methods for `oddeye train --method`. 'labels': trains on a few labelled "
    "defective images as well (`train --labeled-defects K`); 'refs': scores against reference "
    "good shots of the class given at test time (`test --shots`, `predict --refs`); 'fuse': "
    "runs on several backbones joined by '+' (`train --backbone "
    "mobilenet_v2+efficientnet_lite0`), their maps fused."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", metavar="FILE", help="also write the list as JSON to FILE")


def summary(cls: type) -> str:
    """First line of a method class's docstring, without reST markup (the one-line description)."""
    doc = (cls.__doc__ or "").strip().splitlines()
    return doc[0].replace("``", "").strip() if doc else ""


def describe() -> list[dict]:
    """One record per registered method, sorted by name."""
    from oddeye.methods import available_methods, get_method

    rows = []
    for name in available_methods():
        cls = get_method(name)
        rows.append({"name": name, "needs_labels": bool(cls.needs_labels),
                     "needs_references": bool(cls.needs_references),
                     "default_backbone": cls.default_backbone,
                     "exportable": bool(cls.exportable), "fusable": bool(cls.fusable),
                     "description": summary(cls)})
    return rows


def run(args: argparse.Namespace) -> int:
    rows = describe()
    yes = {True: "yes", False: "no"}
    width = max(len("method"), *(len(r["name"]) for r in rows))
    print(f"{'method':<{width}}  labels  refs  fuse  description")
    for r in rows:
        print(f"{r['name']:<{width}}  {yes[r['needs_labels']]:<6}  "
              f"{yes[r['needs_references']]:<4}  {yes[r['fusable']]:<4}  {r['description']}")
    if args.json:
        from oddeye.commands._common import write_json

        write_json(args.json, {"methods": rows})
    return 0
