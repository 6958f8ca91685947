"""What ``image_neighbours`` costs PatchCore at inference, and in the model file.

One fit per variant on each data set, then the detection suite's ``time_inference`` (batch 1,
16 test images) ``--repeats`` times, the variants interleaved so load on the shared machine hits
all alike; medians and the ratio to the pooled bank go to section
``patchcore-image-neighbours-cost`` (docs/methods.md, "Image neighbours").
Run: .venv/bin/python benchmarks/patchcore_image_neighbours_cost.py [--datasets tire]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from oddeye.api import Detector
from oddeye.bench.detection_suite import DATASETS, interleaved_inference_ms, shared_root
from oddeye.bench.results import DEFAULT_RESULTS, write_section
from oddeye.data.mvtec import load_dataset

VARIANTS = {"pooled bank (default)": {}, "image_neighbours 5": {"image_neighbours": 5},
            "image_neighbours 20": {"image_neighbours": 20}}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=["tire"])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=str(DEFAULT_RESULTS))
    a = p.parse_args(argv)
    torch.set_num_threads(2)
    lines = ["## PatchCore: cost of image neighbours", "",
             f"One fit per variant (defaults otherwise); inference: median ms per image at batch "
             f"1 over {a.repeats} interleaved timings (16 test images each); file: the saved "
             "`.oddeye` model.", "",
             "| data | variant | fit s | ms/image | ratio | model file MB |",
             "|---|---|---|---|---|---|"]
    for ds in a.datasets:
        root = shared_root() / DATASETS[ds]
        if not root.exists():
            continue
        cat = load_dataset(root)[0]
        models = {name: Detector(method="patchcore", **params).fit(
            [s.path for s in cat.train], progress=False) for name, params in VARIANTS.items()}
        test = [s.path for s in cat.test[:16]]
        ms = interleaved_inference_ms(models, test, a.repeats)
        base = ms["pooled bank (default)"]
        with tempfile.TemporaryDirectory() as tmp:
            for name, det in models.items():
                size = Path(det.save(Path(tmp) / "m.oddeye")).stat().st_size / 2**20
                med = ms[name]
                lines.append(f"| {ds} | {name} | {det.fit_seconds_:.1f} | {med:.1f} | "
                             f"{med / base:.2f} | {size:.0f} |")
                print(lines[-1], file=sys.stderr, flush=True)
    body = "\n".join(lines)
    write_section("patchcore-image-neighbours-cost", body, a.out)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
