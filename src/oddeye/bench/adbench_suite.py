"""The ``adbench`` benchmark suite: semi-supervised detectors with and without AnoOnly on ADBench.

``run()`` evaluates every method x {base, +AnoOnly} x data set x seed with the protocol of
``oddeye.semisup.protocol`` (natural contamination), the unsupervised references, and a
label-noise study (share of anomalies among the unlabelled training data 0 / 5 / 10%) for the
four deep methods (DeepSAD and DevNet only before the twenty-third session), then writes the
tables into the ``adbench`` section of ``benchmarks/RESULTS.md``. Runs are spread over worker
processes with one torch thread each; the default budgets keep the whole suite (4446 fits) to
about 12 minutes on a 2-core machine (twenty-third session: 3654 fits in 10.2 min).
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path

import numpy as np

SECTION = "adbench"
DEEP_METHODS = ("deepsad", "devnet", "prenet", "feawad")
UNSUP_METHODS = ("iforest", "knn")
GROUPS = ("Classical", "CV", "NLP")
DISPLAY = {"deepsad": "DeepSAD", "devnet": "DevNet", "prenet": "PReNet", "feawad": "FEAWAD",
           "iforest": "IForest", "knn": "kNN"}
#: Overall AUROC (%) the AnoOnly authors report (README of cool-xuan/AnoOnly), base -> +AnoOnly.
PAPER_AUROC = {"deepsad": (65.4, 85.0), "feawad": (76.8, 82.8), "prenet": (82.4, 84.7),
               "devnet": (84.4, 85.2)}
#: Diagnostic variants: name -> (method, constructor overrides, label, groups or None for all).
#: "nopretrain" is DeepSAD as the AnoOnly repository runs it (``pretrain = False``); "norec" is
#: FEAWAD without the reconstruction-error loss terms (inert in the ADBench/AnoOnly code);
#: "fullbudget" is DevNet with ADBench's 50 x 20 batches instead of 20 x 10 (see docs/semisup.md).
VARIANTS: dict[str, tuple[str, dict, str, tuple[str, ...] | None]] = {
    "nopretrain": ("deepsad", {"pretrain": False}, "DeepSAD, no AE pretraining", None),
    "norec": ("feawad", {"rec_loss": False}, "FEAWAD, no reconstruction loss", None),
    "fullbudget": ("devnet", {"epochs": 50, "batches_per_epoch": 20},
                   "DevNet, ADBench budget (50 x 20 batches)", ("CV", "NLP")),
}
#: Relative cost of one fit per method, to start the slow runs first.
_COST = {"feawad": 6.0, "deepsad": 2.0, "prenet": 1.2, "devnet": 1.0, "knn": 0.3, "iforest": 0.3}


@dataclass(frozen=True)
class Task:
    """One fit: a data set file, a method variant, a seed and a contamination (None = natural)."""

    path: str
    group: str
    method: str
    anoonly: bool
    seed: int
    contamination: float | None
    labeled: float
    variant: str = ""

    @property
    def key(self) -> str:
        c = "nat" if self.contamination is None else f"{self.contamination:g}"
        key = (f"{Path(self.path).stem}|{self.method}|{int(self.anoonly)}|{self.seed}|{c}|"
               f"{self.labeled:g}")
        return f"{key}|{self.variant}" if self.variant else key


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


@lru_cache(maxsize=4)
def _load(path: str) -> tuple[np.ndarray, np.ndarray]:
    from oddeye.semisup.protocol import load_npz

    return load_npz(path)


def _run_task(task: Task, hparams: dict) -> dict:
    """Worker: the protocol for one task; failures come back as an ``error`` string."""
    from oddeye.errors import OddeyeError
    from oddeye.semisup.protocol import make_split, run_split

    params = dict(hparams.get(task.method, {}))
    if task.variant:
        params.update(VARIANTS[task.variant][1])
    try:
        X, y = _load(task.path)
        split = make_split(X, y, task.seed, task.labeled, task.contamination, name=task.path)
        cpu = time.process_time()
        res = run_split(split, task.method, task.anoonly, task.seed, **params)
        res["cpu_seconds"] = time.process_time() - cpu
    except OddeyeError as exc:
        return {"key": task.key, "error": str(exc)}
    return {"key": task.key, **res}


def make_tasks(files: Sequence[Path], seeds: int, methods: Sequence[str],
               contamination_methods: Sequence[str], contamination_levels: Sequence[float],
               contamination_groups: Sequence[str], labeled: float,
               diagnostics: Sequence[str] = ()) -> list[Task]:
    """Every fit of the suite: main runs at natural contamination, the label-noise study and the
    diagnostic variants (base and +AnoOnly, natural contamination)."""
    from oddeye.semisup import SEMISUP_METHODS
    from oddeye.semisup.protocol import dataset_group

    tasks: list[Task] = []
    for f in files:
        group = dataset_group(f)
        for seed in range(seeds):
            for m in methods:
                for ao in ((False, True) if SEMISUP_METHODS[m].uses_labels else (False,)):
                    tasks.append(Task(str(f), group, m, ao, seed, None, labeled))
            if group in contamination_groups:
                for m in contamination_methods:
                    for ao in (False, True):
                        for c in contamination_levels:
                            tasks.append(Task(str(f), group, m, ao, seed, float(c), labeled))
            for v in diagnostics:
                if VARIANTS[v][3] is not None and group not in VARIANTS[v][3]:
                    continue
                for ao in (False, True):
                    tasks.append(Task(str(f), group, VARIANTS[v][0], ao, seed, None, labeled, v))
    return tasks


def _cost(task: Task, shapes: dict[str, tuple[int, int]]) -> float:
    n, d = shapes[task.path]
    return _COST.get(task.method, 1.0) * min(n, 10_000) ** 0.5 * (d + 32)


def execute(tasks: Sequence[Task], hparams: dict | None = None, workers: int = 2,
            cache: str | Path | None = None,
            progress: bool = True) -> tuple[dict[str, dict], int]:
    """Run the tasks (slow ones first) in ``workers`` processes: results by ``Task.key`` and the
    number of fits made by this call.

    With ``cache`` (a JSON-lines file) finished results are appended as they arrive and reused by
    the next call, so an interrupted suite resumes where it stopped.
    """
    from oddeye.data.adbench import load_npz

    hparams = hparams or {}
    done: dict[str, dict] = {}
    if cache is not None and Path(cache).exists():
        for line in Path(cache).read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                done[rec["key"]] = rec
    todo = [t for t in tasks if t.key not in done]
    shapes = {}
    for p in {t.path for t in todo}:
        X, _ = load_npz(p)
        shapes[p] = X.shape
    todo.sort(key=lambda t: -_cost(t, shapes))
    sink = open(cache, "a") if cache is not None else None  # noqa: SIM115 - closed below
    t0 = time.perf_counter()
    try:
        if workers <= 1:
            _init_worker()
            results = (_run_task(t, hparams) for t in todo)
            for i, rec in enumerate(results, 1):
                _record(rec, done, sink, i, len(todo), t0, progress)
        else:
            ctx = get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker) as pool:
                futures = [pool.submit(_run_task, t, hparams) for t in todo]
                for i, fut in enumerate(as_completed(futures), 1):
                    _record(fut.result(), done, sink, i, len(todo), t0, progress)
    finally:
        if sink is not None:
            sink.close()
    return done, len(todo)


def _record(rec: dict, done: dict, sink, i: int, n: int, t0: float, progress: bool) -> None:
    done[rec["key"]] = rec
    if sink is not None:
        sink.write(json.dumps(rec) + "\n")
        sink.flush()
    if progress and (i % 50 == 0 or i == n):
        print(f"[adbench] {i}/{n} fits, {time.perf_counter() - t0:.0f} s", flush=True)


# -- aggregation -----------------------------------------------------------------------------------
def _variant(method: str, anoonly: bool, variant: str = "") -> str:
    name = VARIANTS[variant][2] if variant else DISPLAY.get(method, method)
    return name + (" +AnoOnly" if anoonly else "")


def per_dataset_means(tasks: Iterable[Task], results: dict[str, dict],
                      contamination: float | None = None) -> dict[tuple, dict]:
    """``(method, anoonly[, variant]) -> dataset -> {group, auroc, aupr, seconds}``, seed means."""
    acc: dict = defaultdict(lambda: defaultdict(list))
    groups: dict[str, str] = {}
    for t in tasks:
        if t.contamination != contamination:
            continue
        rec = results.get(t.key)
        if rec is None or "error" in rec:
            continue
        name = Path(t.path).stem
        groups[name] = t.group
        key = (t.method, t.anoonly, t.variant) if t.variant else (t.method, t.anoonly)
        acc[key][name].append(rec)
    out: dict = {}
    for variant, by_ds in acc.items():
        out[variant] = {
            name: {"group": groups[name],
                   "auroc": float(np.mean([r["auroc"] for r in recs])),
                   "aupr": float(np.mean([r["aupr"] for r in recs])),
                   "seconds": float(np.mean([r["fit_seconds"] for r in recs])),
                   "n_seeds": len(recs)}
            for name, recs in by_ds.items()}
    return out


def _mean(rows: dict[str, dict], key: str, groups: Sequence[str] | None = None) -> float:
    vals = [r[key] for r in rows.values() if groups is None or r["group"] in groups]
    return float(np.mean(vals)) * 100 if vals else float("nan")


def _fmt(x: float) -> str:
    return "–" if np.isnan(x) else f"{x:.1f}"


def main_table(means: dict, variants: Sequence[tuple[str, bool]], key: str,
               groups: Sequence[str]) -> str:
    """Markdown: one row per variant, mean ``key`` per group, CV+NLP, all, and fit seconds."""
    head = ["method", *groups, "CV+NLP", "all", "fit s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v in variants:
        rows = means.get(v, {})
        if not rows:
            continue
        cells = [_fmt(_mean(rows, key, (g,))) for g in groups]
        cells += [_fmt(_mean(rows, key, ("CV", "NLP"))), _fmt(_mean(rows, key))]
        cells.append(f"{np.mean([r['seconds'] for r in rows.values()]):.2f}")
        lines.append(f"| {_variant(*v)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pair_table(means: dict, methods: Sequence[str]) -> tuple[str, dict]:
    """Markdown: base vs +AnoOnly per method (AUROC all / CV+NLP, wins) next to the paper."""
    lines = ["| method | AUROC base | +AnoOnly | Δ | Δ CV+NLP | AnoOnly wins/ties/losses | "
             "paper base → +AnoOnly |", "|---|---|---|---|---|---|---|"]
    deltas = {}
    for m in methods:
        base, ao = means.get((m, False), {}), means.get((m, True), {})
        common = sorted(set(base) & set(ao))
        if not common:
            continue
        b = {k: base[k] for k in common}
        a = {k: ao[k] for k in common}
        d_all = _mean(a, "auroc") - _mean(b, "auroc")
        d_cvnlp = _mean(a, "auroc", ("CV", "NLP")) - _mean(b, "auroc", ("CV", "NLP"))
        diff = np.array([a[k]["auroc"] - b[k]["auroc"] for k in common])
        wins, ties = int((diff > 0.005).sum()), int((np.abs(diff) <= 0.005).sum())
        paper = PAPER_AUROC.get(m)
        paper_s = f"{paper[0]} → {paper[1]}" if paper else "–"
        lines.append(f"| {DISPLAY[m]} | {_fmt(_mean(b, 'auroc'))} | {_fmt(_mean(a, 'auroc'))} | "
                     f"{d_all:+.1f} | {d_cvnlp:+.1f} | {wins}/{ties}/{len(common) - wins - ties} | "
                     f"{paper_s} |")
        deltas[m] = d_all
    return "\n".join(lines), deltas


def contamination_table(tasks: Sequence[Task], results: dict, methods: Sequence[str],
                        levels: Sequence[float]) -> str:
    """Markdown: AUROC / AUPR per contamination level for each variant of the study."""
    by_level = {c: per_dataset_means(tasks, results, float(c)) for c in levels}
    head = ["method", *[f"AUROC {c:.0%}" for c in levels], *[f"AUPR {c:.0%}" for c in levels],
            f"AUROC Δ {levels[0]:.0%}→{levels[-1]:.0%}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in methods:
        for ao in (False, True):
            rows = [by_level[c].get((m, ao), {}) for c in levels]
            if not all(rows):
                continue
            common = set.intersection(*(set(r) for r in rows))
            rows = [{k: r[k] for k in common} for r in rows]
            au = [_mean(r, "auroc") for r in rows]
            ap = [_mean(r, "aupr") for r in rows]
            cells = [_fmt(x) for x in au] + [_fmt(x) for x in ap] + [f"{au[-1] - au[0]:+.1f}"]
            lines.append(f"| {_variant(m, ao)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_dataset_table(means: dict, variants: Sequence[tuple[str, bool]]) -> str:
    """Markdown: test AUROC (%) of every variant on every data set."""
    def order(name: str) -> tuple[int, str]:
        g = _group_of(means, name)
        return (GROUPS.index(g) if g in GROUPS else len(GROUPS), name)

    names = sorted({n for v in variants for n in means.get(v, {})}, key=order)
    head = ["data set", "group", *[_variant(*v) for v in variants]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in names:
        cells = [_fmt(100 * means[v][n]["auroc"]) if n in means.get(v, {}) else "–"
                 for v in variants]
        lines.append(f"| {n} | {_group_of(means, n)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _group_of(means: dict, name: str) -> str:
    for rows in means.values():
        if name in rows:
            return rows[name]["group"]
    return "?"


def report(tasks: Sequence[Task], results: dict, methods: Sequence[str],
           contamination_methods: Sequence[str], contamination_levels: Sequence[float],
           contamination_groups: Sequence[str], seeds: int, labeled: float,
           seconds: float, workers: int, n_new: int | None = None,
           diagnostics: Sequence[str] = ()) -> str:
    """The markdown body of the ``adbench`` section."""
    from oddeye.semisup import SEMISUP_METHODS

    means = per_dataset_means(tasks, results, None)
    deep = [m for m in methods if SEMISUP_METHODS[m].uses_labels]
    unsup = [m for m in methods if not SEMISUP_METHODS[m].uses_labels]
    variants = [(m, ao) for m in deep for ao in (False, True)] + [(m, False) for m in unsup]
    n_sets = len({Path(t.path).stem for t in tasks})
    by_group = defaultdict(set)
    for t in tasks:
        by_group[t.group].add(Path(t.path).stem)
    errors = sorted({f"{Path(t.path).stem} ({t.method}): {results[t.key]['error']}"
                     for t in tasks if "error" in results.get(t.key, {})})
    pairs, deltas = pair_table(means, deep)
    # goals of issue 6
    all_auroc = {v: _mean(means[v], "auroc") for v in variants if means.get(v)}
    best_semi = max((all_auroc[v] for v in all_auroc if v[0] in deep), default=float("nan"))
    best_unsup = max((all_auroc[v] for v in all_auroc if v[0] in unsup), default=float("nan"))
    goals = ["- +AnoOnly at least as good as its base on average (all sets): "
             + ", ".join(f"{DISPLAY[m]} {'yes' if d >= 0 else 'no'} ({d:+.1f})"
                         for m, d in deltas.items())]
    if "deepsad" in deltas:
        goals.append(f"- DeepSAD gains at least 10 AUROC points: "
                     f"{'yes' if deltas['deepsad'] >= 10 else 'no'} ({deltas['deepsad']:+.1f})")
    goals.append(f"- best semi-supervised row above every unsupervised reference: "
                 f"{'yes' if best_semi > best_unsup else 'no'} "
                 f"({best_semi:.1f} vs {best_unsup:.1f})")
    groups_line = ", ".join(f"{g} {len(by_group[g])}" for g in GROUPS if by_group.get(g))
    recs = [results[t.key] for t in tasks if "auroc" in results.get(t.key, {})]
    fit_wall = sum(r["fit_seconds"] for r in recs)
    cpu_recs = [r["cpu_seconds"] for r in recs if "cpu_seconds" in r]
    n_new = len(recs) if n_new is None else n_new
    reused = f", {len(recs) - n_new} of them reused from the cache" if n_new < len(recs) else ""
    cpu_s = (f"; CPU time {sum(cpu_recs) / 60:.1f} min over the {len(cpu_recs)} fits timed for it"
             if cpu_recs else "")
    parts = [
        "## ADBench: semi-supervised detectors with and without AnoOnly",
        "",
        f"{n_sets} data sets ({groups_line}); seeds 0..{seeds - 1}; stratified 70/30 split, "
        f"{labeled:.0%} of the training anomalies labelled (at least one), the rest of the "
        f"training set unlabelled with its natural anomaly share; sets over 10,000 samples "
        f"stratified-subsampled; StandardScaler on the training split; test-split AUROC and AUPR "
        f"(%), averaged over seeds, then over data sets. Fit seconds: mean wall time of one fit "
        f"(one torch thread, {workers} fits in parallel, on a shared machine). {len(recs)} fits"
        f"{reused}; their fit wall times add up to {fit_wall / 60:.1f} min{cpu_s}; wall time of "
        f"this run {seconds / 60:.1f} min. Method budgets and what AnoOnly changes: "
        f"docs/semisup.md.",
        "",
        "### AUROC (%)",
        "",
        main_table(means, variants, "auroc", GROUPS),
        "",
        "### AUPR (%)",
        "",
        main_table(means, variants, "aupr", GROUPS),
        "",
        "### Base vs +AnoOnly (AUROC, all data sets; paper: 10 CV/NLP sets of the AnoOnly README)",
        "",
        pairs,
        "",
        "Goals of issue 6:",
        *goals,
        "",
    ]
    if contamination_methods and contamination_levels:
        parts += [
            f"### Label noise: share of anomalies among the unlabelled training data "
            f"({', '.join(contamination_groups)} sets)",
            "",
            "Unlabelled anomalies (or normals, when there are too few anomalies) are subsampled "
            "to reach the share; labelled anomalies and test split are those of the main runs.",
            "",
            contamination_table(tasks, results, contamination_methods, contamination_levels),
            "",
        ]
    if diagnostics:
        parts += ["### Diagnostic variants (AUROC %, natural contamination)", "",
                  "Each variant next to its method as run above, on the same data sets; "
                  "docs/semisup.md says why they are here.", ""]
        for v in diagnostics:
            m = VARIANTS[v][0]
            names = set(means.get((m, False, v), {}))
            rows = [(m, ao, *extra) for extra in ((), (v,)) for ao in (False, True)]
            sub_means = {r: {n: x for n, x in means.get(r, {}).items() if n in names}
                         for r in rows}
            parts += [main_table(sub_means, rows, "auroc", GROUPS), ""]
    parts += ["<details><summary>AUROC (%) per data set</summary>", "",
              per_dataset_table(means, variants), "", "</details>"]
    if errors:
        parts += ["", "Runs that could not be made:", *[f"- {e}" for e in errors[:20]]]
    return "\n".join(parts)


def default_root() -> Path:
    """The suite's data folder: ``$ODDEYE_SHARED_DATA/adbench``, else ``../shared/data/adbench``
    (the same shared root as the detection suite, ``detection_suite.shared_root``)."""
    from oddeye.bench.detection_suite import shared_root

    return shared_root() / "adbench"


def data_files(data: str | Path | Sequence[str | Path] | None = None) -> list[Path]:
    """The ``.npz`` files the suite runs on: every one under each folder of ``data`` and each
    ``.npz`` file named (``None``: ``default_root()``). Raises a one-line ``DataError`` for a
    missing path, saying where it looked and how to point elsewhere, and for two files of the
    same name (the suite names data sets by file name, so one would hide the other)."""
    from oddeye.errors import DataError
    from oddeye.semisup.protocol import find_npz

    if data is None:
        root = default_root()
        if not root.is_dir():
            env = os.environ.get("ODDEYE_SHARED_DATA")
            where = (f"ODDEYE_SHARED_DATA={env}" if env else
                     f"ODDEYE_SHARED_DATA is unset, so ../shared/data relative to {Path.cwd()}")
            raise DataError(f"adbench suite: data folder {root} not found ({where}); set "
                            f"ODDEYE_SHARED_DATA to the folder that holds adbench/, or pass "
                            f"--datasets with .npz files or folders of them")
        entries: list[str | Path] = [root]
    else:
        entries = [data] if isinstance(data, (str, Path)) else list(data)
    files: list[Path] = []
    for entry in entries:
        p = Path(entry)
        if p.is_file() and p.suffix != ".npz":
            raise DataError(f"adbench suite: {p} is not an .npz file")
        if not p.exists():
            raise DataError(f"adbench suite: {p} not found (give .npz files or folders of them)")
        files += find_npz(p)
    by_stem: dict[str, Path] = {}
    unique: list[Path] = []
    for f in files:
        prev = by_stem.get(f.stem)
        if prev is not None and prev.resolve() == f.resolve():
            continue  # the same file reached twice
        if prev is not None:
            raise DataError(f"adbench suite: {prev} and {f} are both named {f.stem!r}; the suite "
                            f"names data sets by file name, so rename or leave out one")
        by_stem[f.stem] = f
        unique.append(f)
    return unique


def run(data_root: str | Path | Sequence[str | Path] | None = None, seeds: int = 3,
        methods: Sequence[str] = DEEP_METHODS + UNSUP_METHODS,
        contamination_methods: Sequence[str] = DEEP_METHODS,
        contamination_levels: Sequence[float] = (0.0, 0.05, 0.10),
        contamination_groups: Sequence[str] = ("CV", "NLP"), labeled: float = 0.1,
        diagnostics: Sequence[str] = ("nopretrain", "norec", "fullbudget"),
        workers: int | None = None, hparams: dict | None = None,
        out_path: str | Path | None = None, cache: str | Path | None = None,
        write: bool = True, progress: bool = True) -> str:
    """Run the suite and write the ``adbench`` section; returns the markdown body.

    ``data_root``: a folder of ``.npz`` files, one file, or a list of them (``data_files``);
    default ``$ODDEYE_SHARED_DATA/adbench``, else ``../shared/data/adbench``.

    ``hparams`` maps a method name to keyword arguments for its constructor (defaults are the
    documented budgets); ``cache`` a JSON-lines file to resume an interrupted run (default: the
    ``ODDEYE_ADBENCH_CACHE`` environment variable, else none).
    """
    from oddeye.bench.results import DEFAULT_RESULTS, write_section

    files = data_files(data_root)
    if cache is None:
        cache = os.environ.get("ODDEYE_ADBENCH_CACHE") or None
    workers = workers or min(2, os.cpu_count() or 1)
    tasks = make_tasks(files, seeds, methods, contamination_methods, contamination_levels,
                       contamination_groups, labeled, diagnostics)
    t0 = time.perf_counter()
    results, n_new = execute(tasks, hparams, workers, cache, progress)
    body = report(tasks, results, methods, contamination_methods, contamination_levels,
                  contamination_groups, seeds, labeled, time.perf_counter() - t0, workers,
                  n_new, diagnostics)
    if write:
        write_section(SECTION, body, out_path or DEFAULT_RESULTS)
    return body


def _cli() -> int:  # pragma: no cover - thin wrapper for `python -m oddeye.bench.adbench_suite`
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", nargs="+", default=None,
                   help=".npz files or folders (default: $ODDEYE_SHARED_DATA/adbench, else "
                        "../shared/data/adbench)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--cache", default=None)
    p.add_argument("--no-write", action="store_true")
    a = p.parse_args()
    print(run(a.data, a.seeds, workers=a.workers, cache=a.cache, write=not a.no_write))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_cli())


__all__ = ["SECTION", "Task", "execute", "make_tasks", "report", "run"]
