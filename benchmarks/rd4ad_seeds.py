"""RD4AD's run-to-run spread: the `rd4ad` suite's per-category models refitted with other seeds.

One row of the `rd4ad` section is one training run; whether a change of a few points (60 vs 40
epochs, a flag) is real depends on how much a run varies with its seed alone (initialisation of
the bottleneck and decoder, batch order). Each (data set, seed) is one process of the rd4ad suite's
``category`` part, so its JSON can be reused; ``--reuse DIR`` takes seed 0 from a default run's
``--work`` folder (its parameters are the defaults, whose seed is 0). ``--param KEY=VALUE``
refits a variant instead of the defaults (then ``--section`` names its own section). Writes
section ``rd4ad-seeds`` of the results file by default.

Run: .venv/bin/python benchmarks/rd4ad_seeds.py --seeds 1 2 --threads 1 --work /tmp/rdseeds
     [--reuse /tmp/rdwork] [--cached-only] [--param pseudo=0.5 --section rd4ad-pseudo]
     [--note "where the runs were made"]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from oddeye.bench.detection_suite import DATASETS, shared_root
from oddeye.bench.rd4ad_suite import resolved_params, spawn_part
from oddeye.bench.results import DEFAULT_RESULTS, write_section
from oddeye.commands._common import parse_params

KEYS = ("image_auroc", "pixel_auroc", "pixel_aupro")


def _without_note(argv: list[str]) -> list[str]:
    """The arguments as quoted in the section's text: the note is printed below, not twice."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--note":
            skip = True
        elif not arg.startswith("--note="):
            out.append(arg)
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    p.add_argument("--datasets", nargs="+", choices=sorted(DATASETS),
                   default=["tire", "magnetic_tile", "deeppcb"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", required=True, help="folder keeping each run's JSON")
    p.add_argument("--reuse", help="a default rd4ad run's --work folder: its runs count as seed 0")
    p.add_argument("--out", default=str(DEFAULT_RESULTS))
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="RD4AD / Detector parameter of the variant refitted (default: none)")
    p.add_argument("--section", default="rd4ad-seeds")
    p.add_argument("--note", default="",
                   help="a paragraph for the section: where the runs were made (another machine)")
    p.add_argument("--cached-only", action="store_true",
                   help="fit nothing: tabulate the runs already in --work (missing cells: -)")
    a = p.parse_args(argv)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    variant = parse_params(a.param)
    tag = "".join(f"-{k}{v}" for k, v in sorted(variant.items()))
    names = [ds for ds in a.datasets if (shared_root() / DATASETS[ds]).exists()]
    runs: dict[str, dict[int, dict]] = {ds: {} for ds in names}
    notes: list[str] = []
    reused: list[str] = []  # runs spawn_part read from --work instead of fitting
    for ds in names:
        if a.reuse and (Path(a.reuse) / f"category-{ds}.json").exists():
            saved = json.loads((Path(a.reuse) / f"category-{ds}.json").read_text())
            now = resolved_params(saved["args"])  # not fitted under other defaults (if recorded)
            fresh = saved.get("resolved", now) == now
            if fresh and json.loads(saved["args"][saved["args"].index("--params") + 1]) == variant:
                runs[ds][0] = next(iter(saved["per_category"].values()))
                notes.append(f"{ds} seed 0: {a.reuse} ({saved.get('measured_at')}, "
                             f"code {saved.get('code')}, {saved['args'][-1]} threads)")
    for seed in a.seeds:  # seeds outermost: every data set gets its first seed soonest
        for ds in names:
            if seed in runs[ds] or (a.cached_only and not (
                    work / f"category-{ds}{tag}-seed{seed}.json").exists()):
                continue
            r = spawn_part(work, f"category-{ds}{tag}-seed{seed}",
                           ["--part", "category", "--data", ds, "--params",
                            json.dumps({**variant, "seed": seed}), "--threads", str(a.threads)],
                           reused)
            res = next(iter(r["per_category"].values()))
            runs[ds][seed] = res
            print(f"{ds} seed {seed}: " + " / ".join(f"{res[k]:.3f}" for k in KEYS),
                  file=sys.stderr, flush=True)
    runs = {ds: by_seed for ds, by_seed in runs.items() if by_seed}
    if not runs:
        print(f"no shared data set under {shared_root()} (set ODDEYE_SHARED_DATA)", file=sys.stderr)
        return 1
    what = f"parameters {json.dumps(variant)}" if variant else "defaults"
    lines = [f"## RD4AD: spread over seeds (per-category models, {what})", "",
             f"Each run is one fit with the method's {what} and the seed shown (bottleneck and "
             "decoder initialisation, batch order"
             + (", pseudo-defect draws" if variant.get("pseudo") else "")
             + "); nothing else differs. Cells: image AUROC / pixel AUROC / AUPRO@0.3. "
             f"`python benchmarks/rd4ad_seeds.py {' '.join(_without_note(argv))}` "
             f"(--threads {a.threads}; fit seconds are not shown: runs at other thread counts and "
             "beside other jobs are not comparable).", "",
             *([a.note, ""] if a.note else []),
             "| data | " + " | ".join(f"seed {s}" for s in sorted({s for r in runs.values()
                                                                    for s in r}))
             + " | mean | sd (image) | range (image) |",
             ]
    seeds_all = sorted({s for r in runs.values() for s in r})
    lines.append("|---|" + "---|" * (len(seeds_all) + 3))
    for ds, by_seed in runs.items():
        cells = [" / ".join(f"{by_seed[s][k]:.3f}" for k in KEYS) if s in by_seed else "-"
                 for s in seeds_all]
        means = [statistics.fmean(r[k] for r in by_seed.values()) for k in KEYS]
        img = [r["image_auroc"] for r in by_seed.values()]
        spread = (f"{statistics.stdev(img):.3f} | {max(img) - min(img):.3f}" if len(img) > 1
                  else "- | -")
        lines.append(f"| {ds} | " + " | ".join(cells) + " | "
                     + " / ".join(f"{m:.3f}" for m in means) + f" | {spread} |")
    if notes:
        lines += ["", "Seed-0 runs reused from the default suite run: " + "; ".join(notes) + ". "
                  "Where their thread count differs from this run's, seed 0's row is not the "
                  "other seeds' setting exactly (sums in another order diverge over a fit)."]
    if reused:
        lines += ["", "Runs read from `--work`, fitted by an earlier invocation: "
                  + ", ".join(reused) + "."]
    body = "\n".join(lines)
    write_section(a.section, body, a.out)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
