"""What RD4AD's RD++ options cost per epoch: a few epochs on tire's ``train/good`` with the plain
method, ``pseudo=0.5`` and ``projection=True``, in turn, median seconds per epoch (the first
epoch, which caches the teacher features, is left out). Run it alone on a quiet machine.

Run: .venv/bin/python benchmarks/rd4ad_rdpp_cost.py [--epochs 4] [--repeats 2] [--threads 2]
     [--section rd4ad-rdpp-cost]   (writes that section of RESULTS.md; ``--out`` another file)
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

#: the variants timed, in the order they alternate (name -> RD4AD parameters)
VARIANTS = {"plain": {}, "pseudo=0.5": {"pseudo": 0.5}, "projection": {"projection": True}}


def main(argv: list[str]) -> int:
    from oddeye.backbones import FeatureExtractor
    from oddeye.bench.detection_suite import DATASETS, shared_root
    from oddeye.bench.results import DEFAULT_RESULTS, write_section
    from oddeye.data.mvtec import load_dataset
    from oddeye.methods import TrainSet, create_method
    from oddeye.preprocess import Normalize, PreprocessConfig, load_resized, to_batch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--section", default="rd4ad-rdpp-cost")
    p.add_argument("--out", default=str(DEFAULT_RESULTS))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    root = shared_root() / DATASETS["tire"]
    if not root.exists():
        print(f"no tire data under {shared_root()} (set ODDEYE_SHARED_DATA)", file=sys.stderr)
        return 1
    cat = load_dataset(root)[0]
    x = to_batch(load_resized([s.path for s in cat.train], 256))
    cfg = PreprocessConfig()
    fx = FeatureExtractor("mobilenet_v2", ("s4", "s8", "s16"))
    data = TrainSet(images=x, extractor=fx, normalize=Normalize(cfg.mean, cfg.std),
                    progress=False)
    data.all_features()  # shared cache: every variant indexes the same teacher features
    times: dict[str, list[float]] = {k: [] for k in VARIANTS}
    for _ in range(a.repeats):
        for name, params in VARIANTS.items():
            method = create_method("rd4ad", epochs=a.epochs, **params)
            head = method.build_head(fx.channels, fx.strides)
            secs = [s for _, s in method.train_epochs(head, data)]
            times[name] += secs[1:]
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = [f"| {k} | {med[k]:.2f} | {med[k] / med['plain']:.2f}x |" for k in VARIANTS]
    body = "\n".join([
        "## RD4AD: what the RD++ options cost per epoch (tire, timing only)",
        "",
        f"MobileNetV2 teacher (features cached once, shared by every variant), tire "
        f"`train/good` ({len(data)} images, batch 16), {a.threads} threads; variants in turn, "
        f"{a.repeats} rounds of {a.epochs} epochs, first epoch of each fit left out: medians of "
        f"{len(times['plain'])} epochs. `pseudo=0.5` and `projection` draw pseudo-defective "
        "copies on the CPU and run the teacher on them every step.",
        "",
        "| variant | s / epoch | vs plain |",
        "|---|---|---|",
        *rows,
    ])
    print(body)
    write_section(a.section, body, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
