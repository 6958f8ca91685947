"""RD4AD's unified model with category-balanced epochs (``balance=True``) against the plain one.

The unified fit draws its batches from the union of the training sets, where magnetic_tile's 659
images outnumber tire's 210 three to one; ``balance=True`` draws every category equally often.
Test splits, reported only: nothing is chosen here (``balance=True`` became the default on
validation data, ``benchmarks/rd4ad_unified_balance_selection.py``; the plain row passes
``balance=False`` explicitly when refitted). Each fit is
the RD4AD suite's ``unified`` part in its own process; with ``--work`` the JSON of a finished
part (same arguments) is reused, e.g. the plain unified fit and the per-category models of a
``python -m oddeye.bench.rd4ad_suite --work DIR`` run (that suite fits with the default seed 0).
Writes section ``rd4ad-unified-balance`` (``-seed<S>`` for ``--seed S``).
Run: ``.venv/bin/python benchmarks/rd4ad_unified_balance.py --work DIR [--seed S]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from oddeye.bench.detection_suite import DATASETS as SETS
from oddeye.bench.rd4ad_suite import spawn_part
from oddeye.bench.results import DEFAULT_RESULTS, write_section

DATASETS = list(SETS)  # the suite's short names (``--data``)
NAMES = [SETS[d] for d in DATASETS]  # the category names the results are keyed by
KEYS = ("image_auroc", "pixel_auroc", "pixel_aupro")


def unified_args(params: dict, threads: int) -> list[str]:
    return ["--part", "unified", "--data", *DATASETS, "--params", json.dumps(params),
            "--threads", str(threads)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", help="folder of the parts' JSON (reused when the arguments match)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="fit seed (Detector(seed=...))")
    ap.add_argument("--no-plain", action="store_true",
                    help="fit only the balanced model (the plain row is the comparison of record "
                         "at seed 0)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    seeded = {"seed": a.seed} if a.seed else {}  # seed 0 keeps seed-0 parts' arguments reusable
    suffix = f"-seed{a.seed}" if a.seed else ""
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp())
    work.mkdir(parents=True, exist_ok=True)
    reused: list[str] = []
    # the plain row: reused from an earlier suite run (``{}`` then meant plain epochs) when
    # --work has it, else fitted with balance=False
    plain_params: dict = ({} if not a.seed and (work / "unified.json").exists()
                          else {"balance": False, **seeded})
    rows = {}
    if not a.no_plain:
        rows["plain"] = spawn_part(work, "unified" + suffix,
                                   unified_args(plain_params, a.threads), reused)
    rows["balance=True"] = spawn_part(work, "unified-balance" + suffix,
                                      unified_args({"balance": True, **seeded}, a.threads), reused)
    alone = {}
    for ds, name in zip(DATASETS, NAMES, strict=True):
        path = work / f"category-{ds}.json"
        if path.exists():
            alone[name] = json.loads(path.read_text())["per_category"]
    lines = ["## RD4AD: unified model with category-balanced epochs", "",
             "One RD4AD model (method defaults: MobileNetV2 teacher, 2,500 steps per category) on "
             "the union of the three training sets, tested on each test split; `balance=True` "
             "draws each epoch's images with equal weight per category. Cells: image AUROC / "
             f"pixel AUROC / AUPRO@0.3; fit seed {a.seed}. Reported, not chosen here (the "
             "default was chosen on validation data, section "
             "`selection-rd4ad-unified-balance`).", "",
             "| unified fit | " + " | ".join(NAMES) + " | epochs | fit s |",
             "|---|" + "---|" * (len(NAMES) + 2)]
    for label, res in rows.items():
        per = res["per_category"]
        cells = [" / ".join(f"{per[n][k]:.3f}" for k in KEYS) for n in NAMES]
        lines.append(f"| {label} | " + " | ".join(cells)
                     + f" | {res['epochs']} | {res['fit_seconds']:.0f} |")
    if len(alone) == len(NAMES):
        cells = [" / ".join(f"{alone[n][n][k]:.3f}" if n in alone[n] else "n/a" for k in KEYS)
                 for n in NAMES]
        lines.append("| per-category models (seed 0, reference) | " + " | ".join(cells)
                     + " | - | - |")
    if reused:
        lines += ["", "Read from `--work`, not refitted by this command: " + "; ".join(reused)
                  + "."]
    write_section("rd4ad-unified-balance" + suffix, "\n".join(lines), a.out or DEFAULT_RESULTS)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
