"""``oddeye predict`` on camera-sized photos: peak memory and seconds per image, and the overlay
alone against the float blend it replaced (twenty-fifth session), in the same run.

Generates two 6000 x 4000 JPEGs (a smooth random scene) and a default PatchCore fitted on a
small synthetic class, runs ``oddeye predict`` in a child process (peak RSS from
``getrusage``), then times the overlay of one 24-megapixel map both ways with ``tracemalloc``'s
peak of numpy allocations. Writes section ``predict-camera-size``. Run: ``.venv/bin/python
benchmarks/predict_camera_size.py [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image

from oddeye.bench.results import DEFAULT_RESULTS, write_section

H, W = 4000, 6000


def float_overlay(image: np.ndarray, amap: np.ndarray, threshold: float, scale: float,
                  alpha: float = 0.45) -> np.ndarray:
    """The overlay as it was before the twenty-fifth session (full-size float64 blend)."""
    from oddeye.report.overlay import colormap, normalized_map, outline

    norm = normalized_map(amap, threshold, scale)
    heat = colormap(norm).astype(np.float32)
    a = (alpha * np.clip(norm * 1.6, 0.15, 1.0))[..., None]
    out = image.astype(np.float32) * (1 - a) + heat * a
    edge = outline(amap > threshold, width=max(1, min(image.shape[:2]) // 200))
    out[edge] = (255, 0, 255)
    return out.round().astype(np.uint8)


def measure(fn, *args) -> tuple[float, float]:
    """(seconds, peak MB of Python-tracked allocations, numpy's included) of one call."""
    tracemalloc.start()
    t0 = time.perf_counter()
    fn(*args)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    return seconds, peak


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    from oddeye.api import Detector
    from oddeye.data.synth import generate
    from oddeye.report.overlay import overlay

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rng = np.random.default_rng(0)
        photos = tmp / "photos"
        photos.mkdir()
        for i in range(2):
            small = (rng.random((40, 60, 3)) * 255).astype(np.uint8)
            Image.fromarray(small).resize((W, H), Image.BILINEAR).save(photos / f"{i}.jpg",
                                                                        quality=90)
        root = generate(tmp / "synth", seed=0, classes=["grid"], n_train=10, n_test_good=1,
                        n_test_defect=1, size=256)
        det = Detector(method="patchcore").fit(sorted((root / "grid" / "train" / "good")
                                                      .glob("*.png")), progress=False)
        model = det.save(tmp / "m.oddeye")
        walls, rss = [], []
        for r in range(args.repeats):
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "oddeye.cli", "predict", "--model", str(model),
                            str(photos), "--out", str(tmp / f"out{r}")], check=True,
                           capture_output=True)
            walls.append((time.perf_counter() - t0) / 2)
            rss.append(max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
        image = np.asarray(Image.open(photos / "0.jpg").convert("RGB"))
        amap = np.asarray(Image.fromarray(rng.random((256, 256)).astype(np.float32))
                          .resize((W, H), Image.BILINEAR))
        rows = {}
        for name, fn in (("float blend (before)", float_overlay), ("tabulated, banded", overlay)):
            runs = [measure(fn, image, amap, 0.7, 0.1) for _ in range(args.repeats)]
            rows[name] = (statistics.median(s for s, _ in runs), max(p for _, p in runs))
    base = rows["float blend (before)"]
    lines = [f"`oddeye predict` (default PatchCore, 256 px) on two {W} x {H} JPEGs, child "
             f"process, {args.repeats} runs: median {statistics.median(walls):.1f} s per image "
             f"(model, full-size map, overlay PNG, mask PNG), peak RSS of the process "
             f"{max(rss) / 1e6:.2f} GB (ru_maxrss, kB).", "",
             "The overlay of one 24-megapixel map alone (same run, median of the runs; peak of "
             "numpy allocations by tracemalloc):", "",
             "| overlay | seconds | peak MB | vs before |", "| --- | --- | --- | --- |"]
    for name, (s, p) in rows.items():
        ratio = ("(the baseline)" if (s, p) == base else
                 f"{base[0] / s:.1f}x faster, {base[1] / p:.1f}x less memory")
        lines.append(f"| {name} | {s:.2f} | {p:.0f} | {ratio} |")
    body = "\n".join(lines)
    write_section("predict-camera-size", body, args.out or DEFAULT_RESULTS)
    print(body)
    return body


if __name__ == "__main__":
    main()
