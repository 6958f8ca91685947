"""What ``position="auto"`` costs PatchCore: fits alternating with ``position=0``, then search.

Each data set is fitted ``--repeats`` times per variant, the variants interleaved so load on the
shared machine hits both alike; then each variant's last model is timed at inference (batch 1,
the detection suite's ``time_inference`` on 16 test images), interleaved too. Medians and ratios
go to section ``patchcore-position-cost``.
Run: .venv/bin/python benchmarks/patchcore_position_cost.py [--datasets tire magnetic_tile]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

from oddeye.api import Detector
from oddeye.bench.detection_suite import DATASETS, interleaved_inference_ms, shared_root
from oddeye.bench.results import DEFAULT_RESULTS, write_section
from oddeye.data.mvtec import load_dataset

VARIANTS = {"none": {"position": 0.0}, "auto (default)": {}}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", choices=sorted(DATASETS),
                   default=["tire", "deeppcb", "magnetic_tile"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(DEFAULT_RESULTS))
    a = p.parse_args(argv)
    torch.set_num_threads(2)
    lines = ["## PatchCore: fit time of the position choice", "",
             f"Whole `Detector.fit` (features, choice, coreset, threshold), seconds; "
             f"{a.repeats} fits per variant, interleaved; median (all runs). Inference: "
             f"median ms per image at batch 1 over {a.repeats} interleaved timings of the last "
             "model of each variant.", "",
             "| data | images | none | auto (default) | ratio | weight chosen | ms/image none "
             "| ms/image auto | ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for ds in a.datasets:
        root = shared_root() / DATASETS[ds]
        if not root.exists():
            continue
        cat = load_dataset(root)[0]
        paths = [s.path for s in cat.train]
        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        weight, models = None, {}
        for _ in range(a.repeats):
            for name, params in VARIANTS.items():
                det = Detector(method="patchcore", **params).fit(paths, progress=False)
                times[name].append(det.fit_seconds_)
                models[name] = det
                if name != "none":
                    weight = float(det.model_.head.position)
                print(f"{ds} {name}: {det.fit_seconds_:.1f} s", file=sys.stderr, flush=True)
        test = [s.path for s in cat.test[:16]]
        ms_med = interleaved_inference_ms(models, test, a.repeats)
        med = {v: statistics.median(t) for v, t in times.items()}
        runs = {v: ", ".join(f"{x:.1f}" for x in t) for v, t in times.items()}
        lines.append(f"| {ds} | {len(paths)} | {med['none']:.1f} ({runs['none']}) | "
                     f"{med['auto (default)']:.1f} ({runs['auto (default)']}) | "
                     f"{med['auto (default)'] / med['none']:.2f} | {weight:g} | "
                     f"{ms_med['none']:.1f} | {ms_med['auto (default)']:.1f} | "
                     f"{ms_med['auto (default)'] / ms_med['none']:.2f} |")
    body = "\n".join(lines)
    write_section("patchcore-position-cost", body, a.out)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
