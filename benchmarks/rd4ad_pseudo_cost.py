"""What RD4AD's ``pseudo`` inputs cost per epoch: a few epochs on tire's ``train/good``, plain vs
``pseudo=0.5``, alternating, median seconds per epoch (the first epoch, which caches the teacher
features, is left out). Run it alone on a quiet machine.

Run: .venv/bin/python benchmarks/rd4ad_pseudo_cost.py [--epochs 4] [--repeats 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch


def main(argv: list[str]) -> int:
    from oddeye.backbones import FeatureExtractor
    from oddeye.bench.detection_suite import DATASETS, shared_root
    from oddeye.data.mvtec import load_dataset
    from oddeye.methods import TrainSet, create_method
    from oddeye.preprocess import Normalize, PreprocessConfig, load_resized, to_batch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
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
    data.all_features()  # shared cache: both variants index the same teacher features
    times: dict[float, list[float]] = {0.0: [], 0.5: []}
    for _ in range(a.repeats):
        for share in times:
            method = create_method("rd4ad", epochs=a.epochs, pseudo=share)
            head = method.build_head(fx.channels, fx.strides)
            secs = [s for _, s in method.train_epochs(head, data)]
            times[share] += secs[1:]
    plain, pseudo = (statistics.median(times[k]) for k in (0.0, 0.5))
    print(f"tire, {len(data)} images, {a.threads} threads: plain {plain:.2f} s/epoch, "
          f"pseudo=0.5 {pseudo:.2f} s/epoch ({pseudo / plain:.2f}x); medians of "
          f"{len(times[0.0])} epochs each")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
