"""ONNX benchmark: torch eager vs ONNX Runtime, ms per image at batch 1 and 16, plus parity.

Each method is fitted on the synthetic ``grid`` class (or given ``.oddeye`` files are used),
exported with ``oddeye.export.onnx.export_onnx`` and timed on the same resized uint8 batch with the
same thread count for both runtimes; times are medians of repeated runs after a warm-up.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def synthetic_images(workdir: str | Path, size: int = 256, n_train: int = 20,
                     seed: int = 0) -> tuple[list[Path], list[Path]]:
    """(train, test) image paths of the synthetic grid class under ``workdir`` (made once)."""
    from oddeye.data.mvtec import load_dataset
    from oddeye.data.synth import generate

    root = Path(workdir) / "synth"
    if not (root / "grid").exists():
        generate(root, seed=seed, classes=["grid"], n_train=n_train, n_test_good=8,
                 n_test_defect=2, size=size)
    cat = load_dataset(root)[0]
    return [s.path for s in cat.train], [s.path for s in cat.test]


def fit_synthetic(method: str, workdir: str | Path, size: int = 256, n_train: int = 20,
                  seed: int = 0) -> Path:
    """Fit ``method`` on the synthetic grid class and save it; returns the ``.oddeye`` path."""
    from oddeye.api import Detector

    train, _ = synthetic_images(workdir, size, n_train, seed)
    det = Detector(method=method, size=size, seed=seed, device="cpu")  # both runtimes on the CPU
    det.fit(train, progress=False)
    return det.save(Path(workdir) / f"{method}.oddeye")


def median_ms_per_image(fn, x: np.ndarray, batch: int, repeats: int) -> float:
    """Median over ``repeats`` of the time per image to run all of ``x`` in batches of ``batch``."""
    fn(x[:batch])  # warm-up
    per = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for s in range(0, x.shape[0], batch):
            fn(x[s:s + batch])
        per.append((time.perf_counter() - t0) / x.shape[0])
    return 1000.0 * statistics.median(per)


def time_onnx_inference(det, images: Sequence, repeats: int = 3,
                        threads: int | None = None) -> float:
    """Median ONNX Runtime time per image at batch 1, in ms, of ``det`` exported to a temporary
    file: the same measure as ``detection_suite.time_inference`` (decode and resize excluded)."""
    from oddeye.export.onnx import OnnxDetector, export_onnx
    from oddeye.preprocess import load_resized, to_batch

    x = to_batch(load_resized(list(images), det.size)).numpy()
    with tempfile.TemporaryDirectory(prefix="oddeye-onnx-time-") as tmp:
        path = Path(tmp) / "model.onnx"
        export_onnx(det, path)
        ort_det = OnnxDetector(path, threads=threads)
        return median_ms_per_image(ort_det.run_batch, x, 1, repeats)


def time_one(model_path: str | Path, onnx_path: str | Path, images: Sequence[Path],
             batches: Sequence[int], repeats: int, threads: int, n_images: int = 16) -> dict:
    """Torch and ONNX Runtime ms/image per batch size, and their largest output difference."""
    import torch

    import oddeye
    from oddeye.export.onnx import OnnxDetector
    from oddeye.preprocess import load_resized, to_batch

    torch.set_num_threads(threads)
    det = oddeye.load(model_path, device="cpu")  # the same CPU threads as ONNX Runtime
    ort_det = OnnxDetector(onnx_path, threads=threads)
    images = (list(images) * (n_images // max(1, len(images)) + 1))[:n_images]
    x_t = to_batch(load_resized(images, det.size))
    x_np = x_t.numpy()

    def torch_fn(xb):
        with torch.inference_mode():
            return det.model_(torch.from_numpy(xb))

    out: dict = {"backbone": det.method_.backbone, "size": det.size}
    for b in batches:
        out[f"torch_b{b}"] = median_ms_per_image(torch_fn, x_np, b, repeats)
        out[f"onnx_b{b}"] = median_ms_per_image(ort_det.run_batch, x_np, b, repeats)
    with torch.inference_mode():
        tmaps, tscores = det.model_(x_t)
    omaps, oscores = ort_det.run_batch(x_np)
    out["max_map_diff"] = float(np.abs(tmaps.numpy() - omaps).max())
    out["max_score_diff"] = float(np.abs(tscores.numpy() - oscores).max())
    return out


def run(out_path: str | Path | None = None, methods: Sequence[str] | None = None,
        models: Sequence[str | Path] | None = None, batches: Sequence[int] = (1, 16),
        repeats: int = 5, threads: int | Sequence[int] = (1, 2), size: int = 256,
        section: str = "onnx") -> str:
    """Benchmark torch eager vs ONNX Runtime per thread count; write section ``onnx``."""
    from oddeye.bench.results import DEFAULT_RESULTS, write_section
    from oddeye.export.onnx import export_onnx

    thread_counts = [threads] if isinstance(threads, int) else list(threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="oddeye-onnx-bench-") as tmp:
        pairs: list[tuple[str, Path]] = []
        if models:
            pairs = [(Path(m).stem, Path(m)) for m in models]
        for m in methods or ([] if models else ["patchcore", "padim"]):
            print(f"onnx bench: fitting {m} on synthetic grid ({size}px)", file=sys.stderr,
                  flush=True)
            pairs.append((m, fit_synthetic(m, Path(tmp), size=size)))
        _, images = synthetic_images(tmp, size)
        for name, path in pairs:
            import oddeye

            det = oddeye.load(path)
            onnx_path = Path(tmp) / f"{name}.onnx"
            t0 = time.perf_counter()
            export_onnx(det, onnx_path)
            export_s = time.perf_counter() - t0
            for t in thread_counts:
                print(f"onnx bench: timing {name} with {t} thread(s)", file=sys.stderr,
                      flush=True)
                r = time_one(path, onnx_path, images, batches, repeats, t)
                r.update(method=det.method, export_s=export_s, threads=t,
                         onnx_mb=os.path.getsize(onnx_path) / 1e6)
                rows.append(r)
    head = ["method", "backbone", "input", "threads"]
    for b in batches:
        head += [f"torch ms/img b={b}", f"ORT ms/img b={b}", f"ORT speed-up b={b}"]
    head += ["max map diff", "max score diff", "export s", "ONNX MB"]
    origin = "given model files" if models else "models fitted on the synthetic grid class"
    lines = [f"## ONNX Runtime vs torch eager ({section})", "",
             f"{origin.capitalize()}{'' if models else ' (`oddeye synth` generator, seed 0)'}, "
             f"exported with `oddeye export`; the same thread count for both runtimes, the same "
             "resized uint8 batch of 16 test images; median of "
             f"{repeats} runs after a warm-up; ms per image includes normalisation, backbone, "
             "head, upsampling, blur and score (decode and resize excluded). With as many "
             "threads as cores, times (torch's above all) grow sharply when other processes "
             "load the machine: compare with the load average in the line below.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["method"], r["backbone"], f"{r['size']}px", str(r["threads"])]
        for b in batches:
            t, o = r[f"torch_b{b}"], r[f"onnx_b{b}"]
            cells += [f"{t:.1f}", f"{o:.1f}", f"{t / o:.2f}x"]
        cells += [f"{r['max_map_diff']:.1e}", f"{r['max_score_diff']:.1e}",
                  f"{r['export_s']:.1f}", f"{r['onnx_mb']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    body = "\n".join(lines)
    write_section(section, body, out_path or DEFAULT_RESULTS)
    return body


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m oddeye.bench.onnx_suite``: the suite with its options on the command line."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m oddeye.bench.onnx_suite")
    p.add_argument("--methods", nargs="+")
    p.add_argument("--models", nargs="+", help=".oddeye files to time instead of fitting")
    p.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--section", default="onnx")
    p.add_argument("--out", help="results file (default benchmarks/RESULTS.md)")
    a = p.parse_args(argv)
    print(run(out_path=a.out, methods=a.methods, models=a.models, batches=a.batches,
              repeats=a.repeats, threads=a.threads, size=a.size, section=a.section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
