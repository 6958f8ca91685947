"""Issue 6's label-noise study for the methods the ``adbench`` suite's run left out of it.

``oddeye benchmark --suite adbench`` measures how AUROC / AUPR move when 0%, 5%, 10% of the
unlabelled training data are anomalies for DeepSAD and DevNet (section ``adbench``); this runs
the same study, same code (``oddeye.bench.adbench_suite``: same splits, seeds, levels, CV and
NLP sets, budgets), for PReNet and FEAWAD (or ``--methods``), into section
``adbench-label-noise``. Run:
``.venv/bin/python benchmarks/adbench_label_noise.py [--methods M ...] [--workers N]
[--cache FILE.jsonl]`` (the cache resumes an interrupted run).
"""

from __future__ import annotations

import argparse
import time

from oddeye.bench.adbench_suite import (
    DEEP_METHODS,
    contamination_table,
    data_files,
    execute,
    make_tasks,
)
from oddeye.bench.results import write_section

LEVELS = (0.0, 0.05, 0.10)
GROUPS = ("CV", "NLP")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", nargs="+", choices=DEEP_METHODS, default=["prenet", "feawad"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cache", default=None, help="JSON-lines file of finished fits")
    args = ap.parse_args()
    files = data_files(None)
    tasks = make_tasks(files, args.seeds, [], args.methods, LEVELS, GROUPS, 0.1)
    t0 = time.perf_counter()
    results, n_new = execute(tasks, None, args.workers, args.cache)
    recs = [results[t.key] for t in tasks if "auroc" in results.get(t.key, {})]
    errors = sorted({f"{t.key}: {results[t.key]['error']}" for t in tasks
                     if "error" in results.get(t.key, {})})
    n_sets = len({t.path for t in tasks})
    body = "\n".join([
        "## ADBench label noise: PReNet and FEAWAD" if args.methods == ["prenet", "feawad"]
        else "## ADBench label noise: " + ", ".join(args.methods), "",
        f"The `adbench` section's label-noise study (same code, splits, seeds 0..{args.seeds - 1},"
        f" budgets; {n_sets} {' and '.join(GROUPS)} sets) for the methods it left out. "
        "Unlabelled anomalies (or normals, when there are too few anomalies) are subsampled "
        "to reach the share of anomalies among the unlabelled training data; labelled "
        "anomalies and test split are those of the main runs. AUROC / AUPR (%) on the test "
        f"split, seed means, then data-set means. {len(recs)} fits ({n_new} made by this "
        f"call, {args.workers} in parallel, one torch thread each); wall time "
        f"{(time.perf_counter() - t0) / 60:.1f} min.", "",
        contamination_table(tasks, results, args.methods, LEVELS),
        *(["", "Runs that could not be made:", *[f"- {e}" for e in errors[:20]]]
          if errors else []),
    ])
    write_section("adbench-label-noise", body)
    print(body)


if __name__ == "__main__":
    main()
