"""What the input frame (``pad``) costs: MobileNetV2 to ``s16`` (PatchCore's taps s8 + s16) at
256 px with no frame, 16 and 32 pixels (the backbone then runs on 288 / 320 px), ms per image
at batch 1 and 4, wall / process CPU, medians of interleaved repeats (random weights: values do
not change the time). Writes section ``input-pad-cost``. Run:
``.venv/bin/python benchmarks/input_pad_cost.py [--repeats 9]``.
"""

from __future__ import annotations

import argparse
import os

import torch

from oddeye.backbones.features import FeatureExtractor
from oddeye.backbones.speed import time_interleaved
from oddeye.bench.results import DEFAULT_RESULTS, write_section

PADS = (0, 16, 32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--out", default=str(DEFAULT_RESULTS))
    a = ap.parse_args()
    torch.set_num_threads(2)
    load_before = os.getloadavg()[0]
    fxs = [FeatureExtractor("mobilenet_v2", ["s8", "s16"], weights=None, pad=p) for p in PADS]
    rows = []
    with torch.inference_mode():
        for batch in a.batches:
            x = torch.randn(batch, 3, 256, 256)
            secs = time_interleaved([lambda fx=fx, x=x: fx(x) for fx in fxs], a.repeats)
            base = secs[0][0]
            rows.append(f"| {batch} | " + " | ".join(
                f"{1000 * w / batch:.1f} / {1000 * c / batch:.1f} ({w / base:.2f}x)"
                for w, c in secs) + " |")
    body = "\n".join([
        "## Input frame: what `pad` costs the backbone", "",
        f"MobileNetV2 to s16 (taps s8, s16), 256 px input, folded BatchNorm, channels_last, "
        f"random weights; 2 torch threads; ms per image, wall / process CPU, medians of "
        f"{a.repeats} interleaved repeats (ratio: wall against no frame). Load average "
        f"{load_before:.2f} before, {os.getloadavg()[0]:.2f} after.", "",
        "| batch | " + " | ".join(f"pad {p}" for p in PADS) + " |",
        "|---|" + "---|" * len(PADS), *rows])
    write_section("input-pad-cost", body, a.out)
    print(body)


if __name__ == "__main__":
    main()
