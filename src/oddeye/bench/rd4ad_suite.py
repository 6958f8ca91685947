"""RD4AD benchmark: per-category and unified accuracy with training cost, and the speed comparison.

Three parts, each in its own Python process (so timings and peak memory are its own):

* per category: one model per shared data set (tire, magnetic_tile, deeppcb) with the method's
  defaults: image/pixel AUROC, AUPRO@0.3, seconds per epoch, epochs, total fit seconds, ms/image;
* unified: one model fitted on the union of the three training sets, tested on each;
* speed at equal teacher: a ResNet18 teacher (random weights: timing only) on tire's 210 training
  images, batch 32, 2 threads, for the authors' student and oddeye's lighter options, with and
  without the cached teacher features; the reference is anomalib 2.7 on this machine (42 s/epoch,
  87-106 ms/image).

Protocol as in the detection suite: 256x256 without crop, ImageNet normalisation, sigma 4, image
score = max, metrics on raw scores, nothing chosen on a test split.
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from oddeye.bench.detection_suite import DATASETS, shared_root, time_inference
from oddeye.bench.onnx_suite import time_onnx_inference

#: anomalib 2.7 ReverseDistillation, ResNet18 teacher, tire, batch 32, 2 threads, this machine
ANOMALIB_S_PER_EPOCH = 42.0
ANOMALIB_MS_PER_IMAGE = (87.0, 106.0)
#: student variants timed with the ResNet18 teacher: (label, method params)
SPEED_VARIANTS: tuple[tuple[str, dict], ...] = (
    ("authors' student (basic blocks 2-2-2), teacher recomputed each step",
     {"block": "basic", "cache_features": False}),
    ("authors' student (basic blocks 2-2-2), cached teacher features",
     {"block": "basic", "cache_features": True}),
    ("light student (inverted residual 2-2-2), cached teacher features",
     {"block": "light", "cache_features": True}),
    ("light student (inverted residual 1-1-1, OCBE 1 block), cached teacher features",
     {"block": "light", "decoder_blocks": [1, 1, 1], "ocbe_blocks": 1, "cache_features": True}),
)
#: the caching win with the default teacher and student (pretrained weights, same protocol)
CACHE_VARIANTS: tuple[tuple[str, dict], ...] = (
    ("default, teacher recomputed each step", {"cache_features": False, "backbone": None}),
    ("default, cached teacher features", {"cache_features": True, "backbone": None}),
)


def _categories(names: list[str]) -> list:
    from oddeye.data.mvtec import load_dataset

    cats = []
    for ds in names:
        cats += load_dataset(shared_root() / DATASETS[ds])
    return cats


def _epoch_stats(det) -> tuple[float, int]:
    """(median seconds per epoch, epochs) from the fitted head's training history."""
    hist = det.model_.head.history
    return float(hist[:, 1].median()), int(hist.shape[0])


def run_category(ds: str, params: dict, threads: int) -> dict:
    """Fit one RD4AD model per category of data set ``ds`` and evaluate it (this process)."""
    import torch

    from oddeye.api import Detector
    from oddeye.evaluation import evaluate_category

    torch.set_num_threads(threads)
    out = {}
    for cat in _categories([ds]):
        det = Detector(method="rd4ad", **params)
        det.fit([s.path for s in cat.train], validation=[s.path for s in cat.validation] or None,
                progress=False)
        res = evaluate_category(det, cat, progress=False)
        sec, epochs = _epoch_stats(det)
        res.update(fit_seconds=det.fit_seconds_, s_per_epoch=sec, epochs=epochs,
                   n_train=det.n_train_,
                   ms_per_image_b1=time_inference(det, [s.path for s in cat.test[:16]]),
                   loss_first=float(det.model_.head.history[0, 0]),
                   loss_last=float(det.model_.head.history[-1, 0]))
        out[cat.name] = res
    return out


def run_unified(names: list[str], params: dict, threads: int) -> dict:
    """One model on the union of every category's good training images, tested on each."""
    import torch

    from oddeye.api import Detector
    from oddeye.evaluation import evaluate_category

    torch.set_num_threads(threads)
    cats = _categories(names)
    paths = [s.path for c in cats for s in c.train]
    labels = [c.name for c in cats for _ in c.train]
    val = [s.path for c in cats for s in c.validation]
    det = Detector(method="rd4ad", **params)
    det.fit(paths, validation=val or None, categories=labels, progress=False)
    sec, epochs = _epoch_stats(det)
    per = {c.name: evaluate_category(det, c, progress=False) for c in cats}
    return {"per_category": per, "fit_seconds": det.fit_seconds_, "s_per_epoch": sec,
            "epochs": epochs, "n_train": det.n_train_}


def onnx_ms_per_image(det, images: list, threads: int) -> float | None:
    """ONNX Runtime ms per image at batch 1 (``time_onnx_inference``), or None where the optional
    runtime is not installed (the ``export`` extra): the table then shows a dash."""
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    return time_onnx_inference(det, images, repeats=3, threads=threads)


def run_speed(variant: dict, threads: int, epochs: int = 3) -> dict:
    """Seconds per epoch and ms/image on tire (teacher: random-weight ResNet18 unless given)."""
    import torch

    from oddeye.api import Detector

    torch.set_num_threads(threads)
    cat = _categories(["tire"])[0]
    params = {"epochs": epochs, "train_batch": 32, "backbone": "resnet18", "weights": None,
              **variant}
    if params["backbone"] is None:  # the method's default teacher, with its pretrained weights
        params.update(backbone=None, weights="auto")
    det = Detector(method="rd4ad", **params)
    t0 = time.perf_counter()
    det.fit([s.path for s in cat.train], validation=[s.path for s in cat.validation] or None,
            progress=False)
    hist = det.model_.head.history
    fit_seconds = time.perf_counter() - t0
    images = [s.path for s in cat.test[:16]]
    return {"s_per_epoch": float(hist[:, 1].median()), "epoch_seconds": hist[:, 1].tolist(),
            "fit_seconds": fit_seconds, "n_train": det.n_train_,
            "ms_per_image_b1": time_inference(det, images, repeats=3),
            "ms_per_image_onnx_b1": onnx_ms_per_image(det, images, threads),
            "head_params_m": sum(p.numel() for p in det.model_.head.parameters()) / 1e6}


def _child(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--part", choices=["category", "unified", "speed"])
    p.add_argument("--data", nargs="*")
    p.add_argument("--params", default="{}")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json")
    a = p.parse_args(argv)
    params = json.loads(a.params)
    if a.part == "category":
        res = {"per_category": run_category(a.data[0], params, a.threads)}
    elif a.part == "unified":
        res = run_unified(a.data, params, a.threads)
    else:
        res = run_speed(params, a.threads)
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    Path(a.json).write_text(json.dumps(res))
    return 0


def _code_version() -> str:
    """oddeye's version plus the git commit of the working tree when there is one."""
    from oddeye import __version__

    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).parent, timeout=10, check=False)
        commit = out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__} {commit}".strip()


def resolved_params(args: list[str]) -> dict:
    """Every RD4AD parameter a part's ``--params`` stands for under the current defaults: the
    arguments alone do not say what ``{}`` meant when a default has changed since. Detector
    settings among them (``device``, ``size``, ...) go where a fit sends them, not to the method."""
    from oddeye.api import Detector

    params = json.loads(args[args.index("--params") + 1]) if "--params" in args else {}
    method = Detector(method="rd4ad", **params)._method()
    return json.loads(json.dumps(method.get_params(), default=str))


def spawn_part(tmp: Path, tag: str, args: list[str], reused: list[str] | None = None) -> dict:
    """Run one part in its own process; a part whose JSON (same arguments) is in ``tmp`` is reused.

    With ``--work DIR`` that folder outlives the run, so a long suite can be resumed part by part;
    the tags of reused parts are appended to ``reused`` so the section can say so. A part fitted
    under other method defaults (its recorded ``resolved`` parameters differ) is run again.
    """
    out = tmp / f"{tag}.json"
    if out.exists():
        saved = json.loads(out.read_text())
        stale = "resolved" in saved and saved["resolved"] != resolved_params(args)
        if stale:
            print(f"rd4ad benchmark: {tag} in {out} was fitted under other method defaults; "
                  "fitting it again", file=sys.stderr, flush=True)
        if saved.get("args") == args and not stale:
            print(f"rd4ad benchmark: {tag} from {out}", file=sys.stderr, flush=True)
            if reused is not None:
                reused.append(f"{tag} ({saved.get('measured_at', 'an earlier run')}, code "
                              f"{saved.get('code', 'not recorded')}"
                              + ("" if "resolved" in saved else ", defaults not recorded")
                              + ")")
            return saved
    print(f"rd4ad benchmark: {tag} ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "oddeye.bench.rd4ad_suite", *args, "--json", str(out)],
                   check=True)
    res = json.loads(out.read_text())
    res["args"] = args
    res["resolved"] = resolved_params(args)
    res["measured_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    res["code"] = _code_version()
    out.write_text(json.dumps(res))
    return res


def _fmt(v: float, nd: int = 3) -> str:
    return "n/a" if v != v else f"{v:.{nd}f}"


def run(out_path: str | Path | None = None, datasets: list[str] | None = None,
        params: dict | None = None, threads: int = 2, unified: bool = True,
        speed: bool = True, work_dir: str | Path | None = None) -> str:
    """Run the RD4AD suite and write its section ``rd4ad`` of the results file; returns it."""
    from oddeye.api import Detector
    from oddeye.bench.results import DEFAULT_RESULTS, write_section
    from oddeye.methods import create_method

    names = [d for d in (datasets or list(DATASETS)) if (shared_root() / DATASETS[d]).exists()]
    params = dict(params or {})
    det_keys = set(inspect.signature(Detector.__init__).parameters)
    # for the section's text: the method's parameters and the teacher, which the Detector
    # takes (``--param backbone=...`` was rendered as the default teacher before)
    method = create_method("rd4ad", **{k: v for k, v in params.items()
                                       if k not in det_keys or k == "backbone"})
    per_cat: dict[str, dict] = {}
    state: dict = {"uni": None, "speeds": [], "reused": []}
    t_start = time.perf_counter()

    def write() -> str:
        # rewritten after every part, so an interrupted run keeps what it measured
        body = _render(method.get_params(), names, per_cat, state["uni"], state["speeds"],
                       threads, (time.perf_counter() - t_start) / 60.0, state["reused"])
        write_section("rd4ad", body, out_path or DEFAULT_RESULTS)
        return body

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(work_dir) if work_dir else Path(tmp_s)
        tmp.mkdir(parents=True, exist_ok=True)
        for ds in names:
            r = spawn_part(tmp, f"category-{ds}",
                           ["--part", "category", "--data", ds, "--params", json.dumps(params),
                            "--threads", str(threads)], state["reused"])
            for name, res in r["per_category"].items():
                res["peak_rss_mb"] = r["peak_rss_mb"]
                per_cat[name] = res
                print(f"  {name}: image AUROC {res['image_auroc']:.3f} pixel AUROC "
                      f"{res['pixel_auroc']:.3f} AUPRO {res['pixel_aupro']:.3f} "
                      f"{res['s_per_epoch']:.1f} s/epoch x {res['epochs']} fit "
                      f"{res['fit_seconds']:.0f} s", file=sys.stderr, flush=True)
            write()
        if unified and len(names) > 1:
            state["uni"] = spawn_part(tmp, "unified", ["--part", "unified", "--data", *names,
                                                       "--params", json.dumps(params), "--threads",
                                                       str(threads)], state["reused"])
            write()
        if speed and "tire" in DATASETS and (shared_root() / DATASETS["tire"]).exists():
            for label, variant in (*SPEED_VARIANTS, *CACHE_VARIANTS):
                state["speeds"].append((label, spawn_part(tmp, f"speed-{len(state['speeds'])}", [
                    "--part", "speed", "--params", json.dumps(variant), "--threads",
                    str(threads)], state["reused"])))
                write()
    return write()


def _same_run_ratios(speeds: list) -> list[str]:
    """Speed-ups against the first speed row, measured in the same run: the authors' student
    with the teacher recomputed every step is the computation anomalib runs (without its
    framework), and a ratio within one run does not depend on the machine's speed that day,
    which the fixed anomalib figures do (it varied about 3x between sessions)."""
    if len(speeds) < 2:
        return []
    base_label, base = speeds[0]
    lines = ["", f"The same run against its first row ({base_label}: anomalib's computation "
             "without its framework), base / row; a day-independent reading of the columns above, "
             "whose reference was measured on another day:", "",
             "| student | per epoch | per image (torch) | per image (ORT) |", "|---|---|---|---|"]
    base_ms = base["ms_per_image_b1"]
    for label, r in speeds[1:]:
        ort = r.get("ms_per_image_onnx_b1")
        lines.append(f"| {label} | {base['s_per_epoch'] / r['s_per_epoch']:.2f}x | "
                     f"{base_ms / r['ms_per_image_b1']:.2f}x | "
                     + ("-" if ort is None else f"{base_ms / ort:.2f}x") + " |")
    ort = base.get("ms_per_image_onnx_b1")
    if ort is not None:
        lines.append(f"| {base_label}, exported | 1.00x | 1.00x | {base_ms / ort:.2f}x |")
    return lines


def _render(p: dict, names: list[str], per_cat: dict, uni: dict | None, speeds: list,
            threads: int, total_min: float, reused: Sequence[str] = ()) -> str:
    """The markdown section from whatever parts have finished."""
    lines = [
        "## RD4AD (reverse distillation, one-class embedding)", "",
        f"Teacher `{p['backbone']}` taps {', '.join(p['layers'])}; student block `{p['block']}`; "
        f"loss `{p['loss']}` (1 - cos); stage maps summed "
        + ("each standardised on the training images (`stage_weights=\"spread\"`)"
           if p.get("stage_weights") == "spread" else "as they are (the paper's sum)")
        + f"; Adam lr {p['lr']} betas {tuple(p['betas'])}, batch "
        f"{p['train_batch']}, " + (f"{p['epochs']} epochs" if p.get("epochs") is not None else
                                   f"{p['steps']} optimiser steps (rounded up to whole epochs)")
        + " fixed in advance; teacher features cached when "
        f"they fit in {p['cache_mb']} MB. {threads} torch threads. Protocol: 256x256 no crop, "
        "ImageNet normalisation, sigma 4, image score max, raw scores. s/epoch = median over "
        "epochs; fit s = whole `Detector.fit` (decode, teacher features, training, threshold); "
        "ms/image = model only at batch 1 (median of 3 passes over 16 test images).", "",
        "### One model per category", "",
        "| category | image AUROC | pixel AUROC | AUPRO@0.3 | s/epoch | epochs | fit s | "
        "ms/image | train images | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in per_cat.items():
        lines.append(f"| {name} | {_fmt(r['image_auroc'])} | {_fmt(r['pixel_auroc'])} | "
                     f"{_fmt(r['pixel_aupro'])} | {r['s_per_epoch']:.1f} | {r['epochs']} | "
                     f"{r['fit_seconds']:.0f} | {r['ms_per_image_b1']:.1f} | {r['n_train']} | "
                     f"{r['peak_rss_mb']:.0f} |")
    if uni is not None:
        lines += ["", f"### Unified: one model for {', '.join(names)}", "",
                  f"{uni['n_train']} training images, {uni['epochs']} epochs at "
                  f"{uni['s_per_epoch']:.1f} s/epoch, fit {uni['fit_seconds']:.0f} s, peak RSS "
                  f"{uni['peak_rss_mb']:.0f} MB.", "",
                  "| category | image AUROC | pixel AUROC | AUPRO@0.3 | image AUROC per-category "
                  "model | difference |", "|---|---|---|---|---|---|"]
        for name, r in uni["per_category"].items():
            own = per_cat.get(name, {}).get("image_auroc", float("nan"))
            lines.append(f"| {name} | {_fmt(r['image_auroc'])} | {_fmt(r['pixel_auroc'])} | "
                         f"{_fmt(r['pixel_aupro'])} | {_fmt(own)} | "
                         f"{_fmt(r['image_auroc'] - own)} |")
    if speeds:
        lo, hi = ANOMALIB_MS_PER_IMAGE
        lines += ["", "### Speed at equal teacher (ResNet18, random weights, tire, batch 32)", "",
                  f"Reference: anomalib 2.7 ReverseDistillation on this machine, "
                  f"{ANOMALIB_S_PER_EPOCH:.0f} s/epoch and {lo:.0f}-{hi:.0f} ms/image. Speed-up "
                  "= reference / ours (ms/image against the faster end of the range). Three "
                  "epochs each. ms/image: torch eager, and the same model exported with "
                  "`oddeye export` and run by ONNX Runtime with the same threads (ORT; `-`: "
                  "not measured in that run).", "",
                  "| student | head params M | epoch 1 s (incl. teacher cache) | s/epoch | "
                  "speed-up per epoch | ms/image | speed-up per image | ORT ms/image | "
                  "speed-up per image (ORT) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for label, r in speeds[:len(SPEED_VARIANTS)]:
            ort = r.get("ms_per_image_onnx_b1")
            ort_cells = "- | -" if ort is None else f"{ort:.1f} | {lo / ort:.2f}x"
            lines.append(f"| {label} | {r['head_params_m']:.1f} | {r['epoch_seconds'][0]:.1f} | "
                         f"{r['s_per_epoch']:.1f} | "
                         f"{ANOMALIB_S_PER_EPOCH / r['s_per_epoch']:.2f}x | "
                         f"{r['ms_per_image_b1']:.1f} | {lo / r['ms_per_image_b1']:.2f}x | "
                         f"{ort_cells} |")
        lines += _same_run_ratios(speeds[:len(SPEED_VARIANTS)])
        rest = speeds[len(SPEED_VARIANTS):]
        if rest:
            lines += ["", f"Caching the frozen teacher with the default teacher "
                      f"(`{p['backbone']}`, pretrained) and student, same images and batch:", "",
                      "| run | epoch 1 s (incl. teacher cache) | s/epoch | ms/image |",
                      "|---|---|---|---|"]
            for label, r in rest:
                lines.append(f"| {label} | {r['epoch_seconds'][0]:.1f} | {r['s_per_epoch']:.1f} "
                             f"| {r['ms_per_image_b1']:.1f} |")
            if len(rest) == 2:
                lines.append(f"\nSpeed-up of the cache per epoch (recomputed / cached): "
                             f"{rest[0][1]['s_per_epoch'] / rest[1][1]['s_per_epoch']:.2f}x.")
    lines += ["", f"Wall time of this invocation so far {total_min:.0f} min."]
    if reused:
        lines += ["", "Parts reused from `--work` (measured then, with the code named, not in "
                  "this invocation's time): " + ", ".join(reused) + "."]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """``python -m oddeye.bench.rd4ad_suite [options]``: run the suite (``--part``: one child)."""
    if "--part" in argv:
        return _child(argv)
    from oddeye.commands._common import parse_params

    p = argparse.ArgumentParser(prog="python -m oddeye.bench.rd4ad_suite")
    p.add_argument("--datasets", nargs="+", choices=sorted(DATASETS))
    p.add_argument("--param", action="append", metavar="KEY=VALUE",
                   help="Detector / RD4AD parameter for the accuracy parts")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-unified", action="store_true")
    p.add_argument("--no-speed", action="store_true")
    p.add_argument("--out", help="results file (default benchmarks/RESULTS.md)")
    p.add_argument("--work", help="folder keeping each part's JSON: a rerun reuses finished parts")
    a = p.parse_args(argv)
    print(run(out_path=a.out, datasets=a.datasets, params=parse_params(a.param),
              threads=a.threads, unified=not a.no_unified, speed=not a.no_speed,
              work_dir=a.work))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
