"""CPU timing of a FeatureExtractor: ms/image by batch size, with/without BN folding and variants.

    python -m oddeye.backbones.speed --backbone mobilenet_v2 --layers s16 --size 256
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable

import torch

from .features import FeatureExtractor


def time_call(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_interleaved(fns: list[Callable[[], object]], repeats: int,
                     warmup: int = 2) -> list[tuple[float, float]]:
    """Median (wall, process CPU) seconds of each ``fn``, timed round-robin so that load
    changes hit all variants alike; CPU time is the less load-sensitive of the two."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    walls: list[list[float]] = [[] for _ in fns]
    cpus: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, wall, cpu in zip(fns, walls, cpus, strict=True):
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return [(statistics.median(w), statistics.median(c)) for w, c in zip(walls, cpus, strict=True)]


def _variants(fx_folded: FeatureExtractor, fx_plain: FeatureExtractor,
              names: list[str], size: int) -> dict[str, Callable[[torch.Tensor], object]]:
    """Callables to time, keyed by a short description."""
    out: dict[str, Callable[[torch.Tensor], object]] = {}
    if "plain" in names:
        out["unfolded"] = fx_plain
    if "folded" in names:
        out["folded"] = fx_folded
    if "channels_last" in names:
        out["folded+channels_last"] = FeatureExtractor(
            fx_folded.backbone_name, fx_folded.layers, weights=None, channels_last=True)
    if "jit" in names:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            example = torch.zeros(1, 3, size, size)
            traced = torch.jit.freeze(torch.jit.trace(fx_folded, example, strict=False))
        out["folded+jit.freeze"] = traced
    return out


def main(argv: list[str] | None = None) -> int:
    """Print a markdown table of ms/image (median) for each variant and batch size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--layers", nargs="+", default=["s16"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--variants", nargs="+", default=["plain", "folded", "channels_last"],
                        help="any of plain folded channels_last jit")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"load average before: {os.getloadavg()}, torch threads {torch.get_num_threads()}")
    # weights=None: timing does not depend on the values, and runs without weight files
    folded = FeatureExtractor(args.backbone, args.layers, weights=None, fold_bn=True,
                              channels_last=False)
    plain = FeatureExtractor(args.backbone, args.layers, weights=None, fold_bn=False,
                             channels_last=False)
    variants = _variants(folded, plain, args.variants, args.size)
    rows = []
    with torch.inference_mode():
        for batch in args.batches:
            x = torch.randn(batch, 3, args.size, args.size)
            seconds = time_interleaved([lambda fn=fn, x=x: fn(x) for fn in variants.values()],
                                       args.repeats)
            rows.append([str(batch)] + [f"{1000 * w / batch:.1f} / {1000 * c / batch:.1f}"
                                        for w, c in seconds])
    print(f"\n{args.backbone} up to {','.join(args.layers)} at {args.size}x{args.size}, "
          f"ms/image, wall / process CPU (median of {args.repeats}), "
          f"{torch.get_num_threads()} threads\n")
    print("| batch | " + " | ".join(variants) + " |")
    print("|" + "---|" * (len(variants) + 1))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nload average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
