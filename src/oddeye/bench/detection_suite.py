"""Detection benchmark: methods x data sets -> accuracy, fit time, inference speed, peak memory.

Every (method, data set) pair runs in its own Python process so its peak RSS is its own. The
protocol is the README's: 256x256 without crop, ImageNet normalisation, Gaussian sigma 4, image
score = max, metrics on raw scores, nothing chosen on the test split.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

DATASETS = {"tire": "mvtec3d_tire", "magnetic_tile": "magnetic_tile", "deeppcb": "deeppcb"}
#: the methods the suite fits when ``--methods`` is not given
DEFAULT_METHODS = ["patchcore", "padim"]


def shared_root() -> Path:
    """Where the shared real data sets live (``ODDEYE_SHARED_DATA`` or ../shared/data)."""
    return Path(os.environ.get("ODDEYE_SHARED_DATA", "../shared/data"))


def check_args(methods: list[str] | None, datasets: list[str] | None) -> None:
    """Refuse unknown method names and data set folders before anything runs (``DataError``,
    one line), so a typo does not surface as a child's traceback after the valid pairs ran."""
    from oddeye.data.mvtec import find_categories
    from oddeye.errors import DataError, OddeyeError
    from oddeye.methods import available_methods

    known = available_methods()
    unknown = [m for m in methods or [] if m not in known]
    if unknown:
        raise DataError(f"--methods: unknown method(s) {', '.join(map(repr, unknown))} for the "
                        f"detection suite; available: {', '.join(known)}")
    for ds in datasets or []:
        if ds == "synthetic" or ds in DATASETS:
            continue  # a missing shared data set is skipped with a note, as before
        path = Path(ds)
        if not path.is_dir():
            raise DataError(f"--datasets {ds}: no such folder, and not one of the detection "
                            f"suite's named sets (synthetic, {', '.join(DATASETS)})")
        try:
            find_categories(path, require_train=True)
        except OddeyeError as exc:
            raise DataError(f"--datasets {ds}: not a data set folder ({exc})") from None


def time_inference(det, images: list, repeats: int = 3,
                   clock: Callable[[], float] = time.perf_counter) -> float:
    """Median model time per image at batch 1, in ms (decode excluded, inference_mode).

    ``clock``: wall time by default; ``time.process_time`` gives CPU time of all threads. On a
    GPU the resized uint8 batch is already on the device and every pass waits for its kernels.
    """
    import torch

    from oddeye.device import synchronize
    from oddeye.preprocess import load_resized, to_batch

    dev = det.device_
    x = to_batch(load_resized(images, det.size)).to(dev)
    with torch.inference_mode():
        det.model_(x[:1])  # warm-up
        synchronize(dev)
        per = []
        for _ in range(repeats):
            t0 = clock()
            for i in range(x.shape[0]):
                det.model_(x[i : i + 1])
            synchronize(dev)
            per.append((clock() - t0) / x.shape[0])
    return 1000.0 * statistics.median(per)


def interleaved_inference_ms(models: dict, images: list, rounds: int,
                             time_one: Callable[..., float] = time_inference) -> dict[str, float]:
    """Median ``time_one(det, images)`` per named model over ``rounds`` rounds, the models taking
    turns within each round so that load on a shared machine hits every model alike."""
    ms: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, det in models.items():
            ms[name].append(time_one(det, images))
    return {name: statistics.median(t) for name, t in ms.items()}


def run_one(method: str, data: str, backbone: str | None, params: dict, threads: int) -> dict:
    """Fit + test one method on every category of one data set (this process only)."""
    import torch

    from oddeye.api import Detector
    from oddeye.data.mvtec import load_dataset
    from oddeye.evaluation import evaluate_category, mean_metrics

    torch.set_num_threads(threads)
    per_cat, fit_s, ms, bank, pads = {}, [], [], [], set()
    kwargs = {**params, **({"backbone": backbone} if backbone else {})}
    for cat in load_dataset(data):
        det = Detector(method=method, **kwargs)
        det.fit([s.path for s in cat.train], validation=[s.path for s in cat.validation] or None,
                progress=False)
        fit_s.append(det.fit_seconds_)
        pads.add(det.pad_)
        head_bank = getattr(det.model_.head, "bank", None)
        bank.append(int(head_bank.shape[0]) if head_bank is not None else 0)
        per_cat[cat.name] = evaluate_category(det, cat, progress=False)
        weight = getattr(det.model_.head, "position", None)  # PatchCore's chosen position term
        if isinstance(weight, torch.Tensor):
            per_cat[cat.name]["position_weight"] = float(weight)
        ms.append(time_inference(det, [s.path for s in cat.test[:16]]))
    res = mean_metrics(per_cat)
    res.update(fit_seconds=sum(fit_s), ms_per_image=statistics.median(ms),
               peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
               bank=max(bank), pad=max(pads), per_category=per_cat)
    weights = {c.get("position_weight") for c in per_cat.values()}
    if len(weights) == 1 and None not in weights:
        res["position_weight"] = weights.pop()
    return res


def _child(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--method")
    p.add_argument("--data")
    p.add_argument("--backbone")
    p.add_argument("--params", default="{}")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json")
    a = p.parse_args(argv)
    from oddeye.errors import OddeyeError

    try:
        res = run_one(a.method, a.data, a.backbone, json.loads(a.params), a.threads)
    except OddeyeError as exc:  # one line for the parent to quote, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    Path(a.json).write_text(json.dumps(res))
    return 0


def _run_child(cmd: list[str], method: str, dataset: str) -> None:
    """Run one child; its failure becomes a one-line ``OddeyeError`` naming the method and data
    set (the child's last stderr line says why), not a CalledProcessError traceback."""
    from oddeye.errors import OddeyeError

    proc = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
    if proc.returncode == 0:
        sys.stderr.write(proc.stderr)  # the child's warnings, if any, as they were
        return
    lines = [ln.strip() for ln in (proc.stderr or "").splitlines() if ln.strip()]
    why = lines[-1] if lines else f"exit status {proc.returncode}"
    why = why.removeprefix("error: ")
    raise OddeyeError(f"detection suite: {method} on {dataset} failed: {why} (rows finished "
                      f"before it are kept in the results file)")


def run(methods: list[str] | None = None, datasets: list[str] | None = None,
        backbone: str | None = None, params: dict | None = None, threads: int = 2,
        out_path: str | Path | None = None, section: str = "detection") -> str:
    """Run every (method, data set) pair in a child process and write the results table."""
    from oddeye.bench.results import DEFAULT_RESULTS, write_section
    from oddeye.data.synth import generate

    check_args(methods, datasets)
    methods = list(dict.fromkeys(methods or DEFAULT_METHODS))  # a repeat is the same fit
    datasets = list(dict.fromkeys(datasets or ["synthetic", *DATASETS]))
    rows: list = []
    planned = len(methods) * len(datasets)  # less the data sets found missing
    body = _table(rows, backbone, params, threads, section)
    with tempfile.TemporaryDirectory() as tmp:
        for ds in datasets:
            if ds == "synthetic":
                path = generate(Path(tmp) / "synth", seed=0)
            elif ds in DATASETS:
                path = shared_root() / DATASETS[ds]
                if not path.exists():
                    print(f"skip {ds}: {path} not found", file=sys.stderr)
                    planned -= len(methods)
                    continue
            else:
                path = Path(ds)
            for m in methods:
                out = Path(tmp) / f"{m}_{ds.replace('/', '_')}.json"
                cmd = [sys.executable, "-m", "oddeye.bench.detection_suite", "--method", m,
                       "--data", str(path), "--params", json.dumps(params or {}),
                       "--threads", str(threads), "--json", str(out)]
                if backbone:
                    cmd += ["--backbone", backbone]
                print(f"benchmark: {m} on {ds} ...", file=sys.stderr, flush=True)
                _run_child(cmd, m, ds)
                r = json.loads(out.read_text())
                rows.append((m, ds, r))
                print(f"  image AUROC {r['image_auroc']:.3f} pixel AUROC {r['pixel_auroc']:.3f} "
                      f"AUPRO {r['pixel_aupro']:.3f} fit {r['fit_seconds']:.1f}s "
                      f"{r['ms_per_image']:.1f} ms/img {r['peak_rss_mb']:.0f} MB", file=sys.stderr)
                # rewrite the section after every row, so an interrupted run keeps what it
                # measured, marked as partial until the last row
                body = _table(rows, backbone, params, threads, section, planned)
                write_section(section, body, out_path or DEFAULT_RESULTS)
    return body


def _table(rows: list, backbone: str | None, params: dict | None, threads: int,
           section: str, planned: int | None = None) -> str:
    """The markdown table of the finished (method, data set) rows; while fewer than ``planned``
    are done it says so (a run interrupted there leaves that note, not a table that looks
    complete under the full command)."""
    lines = [f"## Detection ({section})", "",
             f"Backbone: {backbone or 'method default'}; params: {json.dumps(params or {})}; "
             f"{threads} torch threads; device {(params or {}).get('device', 'auto')}. "
             "Protocol: 256x256 no crop, ImageNet normalisation, "
             "sigma 4, image score max, raw scores. Synthetic = `oddeye synth --seed 0` (all "
             "classes, mean over classes; its fit s is the sum over the classes).", "",
             *([f"**Partial: {len(rows)} of {planned} rows; the run stopped (or was still "
                f"running) when this was written.**", ""]
               if planned is not None and len(rows) < planned else []),
             "Frame: the input frame in pixels each model used (`pad`; 0 = none).", "",
             "| method | data | frame | image AUROC | pixel AUROC | AUPRO@0.3 | image AP | "
             "pixel AP | fit s | ms/image (b=1) | peak RSS MB | bank |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m, ds, r in rows:
        lines.append(f"| {m} | {ds} | {r.get('pad', '-')} | {r['image_auroc']:.3f} | "
                     f"{r['pixel_auroc']:.3f} | "
                     f"{r['pixel_aupro']:.3f} | {r['image_ap']:.3f} | {r['pixel_ap']:.3f} | "
                     f"{r['fit_seconds']:.1f} | {r['ms_per_image']:.1f} | {r['peak_rss_mb']:.0f} | "
                     f"{r.get('bank') or '-'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
