"""Choose default hyper-parameters without any test split.

For every real data set, candidates fit on part of ``train/good`` and are scored on good images
they did not see, from the set's ``validation/good`` (a later acquisition) where it has one, else
from the rest of ``train/good``; each validation image also gets pseudo-anomalous copies
(``oddeye.data.pseudo``) with exact masks. Synthetic classes (``oddeye synth``) are scored on
their own generated test split. The table says which candidate wins. Pseudo-defects on good
images cannot show a shift between acquisitions: choices that model each position are not made
on this suite alone (docs/methods.md, ``map_norm``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: Pseudo-defect strength, chosen in a probe on validation data only (default PatchCore, one
#: pseudo-defect per validation image): at full strength (1.0) it scored 0.988 image AUROC on
#: tire's validation split, too close to 1 to tell candidates apart; at 0.5 0.908 (tire), 0.727
#: (magnetic_tile), 0.650 (deeppcb). With two copies per image the suite's first run gave 0.897,
#: 0.764, 0.633 (tire then validated on a split of train/good).
SEVERITY = 0.5

#: Candidate configurations; a ``method`` key overrides the suite's method for that row, a
#: ``holdout`` key holds that share of the fitting images out of the fit (default none).
CANDIDATES: dict[str, dict] = {
    "mobilenet_v2 s8+s16": {"backbone": "mobilenet_v2", "layers": ["s8", "s16"]},
    "mobilenet_v2 s8+s16 raw, unweighted": {"backbone": "mobilenet_v2",
                                            "layers": ["s8", "s16"], "equal_layers": False,
                                            "cosine": False},
    "mobilenet_v2 s8+s16 5x5": {"backbone": "mobilenet_v2", "layers": ["s8", "s16"], "kernel": 5},
    "mobilenet_v2 s4+s8+s16": {"backbone": "mobilenet_v2", "layers": ["s4", "s8", "s16"]},
    "efficientnet_lite0 s8+s16": {"backbone": "efficientnet_lite0", "layers": ["s8", "s16"]},
    "efficientnet_lite0 s4+s8+s16": {"backbone": "efficientnet_lite0",
                                     "layers": ["s4", "s8", "s16"]},
    "padim (its defaults)": {"method": "padim"},
}


def validation_split(paths: list, size: int | None, seed: int = 0, max_fit: int | None = 100,
                     max_val: int = 24, severity: float = SEVERITY, copies: int = 2,
                     later: list | None = None, kinds: tuple[str, ...] | None = None,
                     placement: str = "inner") -> tuple[list, list, np.ndarray, np.ndarray | list]:
    """(fit paths, eval images, eval labels, eval masks) from good images only.

    ``size=None`` keeps the validation images at their own resolution (masks then come as a
    list, one per image): candidates that differ in input size each resize them themselves, so
    pseudo-defects are as small, relative to the part, as they were drawn.

    The validation images are a seeded share of ``paths`` or, when given, of ``later``: good
    images of a later acquisition (MVTec 3D's ``validation/good``), which also shows what a shift
    between acquisitions does to a candidate; a split of one acquisition cannot (docs/methods.md,
    ``map_norm``). ``max_fit=None`` fits on every image not used for validation. Every
    validation image is kept as a good example and gets ``copies``
    pseudo-anomalous copies (``kinds`` in turn, default ``oddeye.data.pseudo.KINDS``; donor =
    the next validation image, for ``swap`` the most different one), placed as ``placement``
    says (``oddeye.data.pseudo.PLACEMENTS``: ``inner`` keeps them off the border).
    """
    from oddeye.data.pseudo import KINDS, pseudo_validation
    from oddeye.preprocess import load_resized, load_rgb

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(paths))
    if later:
        val = [later[i] for i in rng.permutation(len(later))[:max_val]]
        fit = [paths[i] for i in order[:max_fit]]  # a slice to None keeps them all
    else:
        n_val = min(max_val, max(4, len(paths) // 5))
        val = [paths[i] for i in order[:n_val]]
        fit = [paths[i] for i in order[n_val:None if max_fit is None else n_val + max_fit]]
    goods = [load_rgb(v) for v in val] if size is None else load_resized(val, size)
    images, labels, masks = pseudo_validation(goods, rng, copies, severity, kinds or KINDS,
                                              placement)
    return fit, images, labels, (masks if size is None else np.stack(masks))


def score_candidate(method: str, params: dict, fit: list, images: list, labels: np.ndarray,
                    masks: np.ndarray | list) -> dict:
    """Fit on ``fit`` and evaluate on the given images (image/pixel AUROC, AUPRO); masks of
    another size than the candidate's maps are resized to them (nearest neighbour)."""
    from oddeye.api import Detector

    params = dict(params)
    method = params.pop("method", method)
    holdout = params.pop("holdout", 0)  # a candidate needing held-out images says how many
    t0 = time.perf_counter()
    det = Detector(method=method, holdout=holdout, **params).fit(fit, progress=False)
    res = score_fitted(det, images, labels, masks)
    res["seconds"] = time.perf_counter() - t0
    return res


def score_fitted(det, images: list, labels: np.ndarray, masks: np.ndarray | list) -> dict:
    """Image / pixel AUROC, AUPRO of a fitted detector on the validation images; masks of
    another size than its maps are resized to them (nearest neighbour)."""
    from oddeye.metrics import evaluate
    from oddeye.preprocess import resize_mask

    pred = det.predict(images)
    masks = np.stack([resize_mask(np.asarray(m), det.size) for m in masks])
    return evaluate(pred.scores, labels, pred.maps, masks)


def save_sets(path: str | Path, sets: dict[str, tuple], settings: str = "") -> None:
    """Write built validation sets (fitting images decoded and resized to 256, the evaluation
    arrays as they are) to one compressed ``.npz``, to rerun them where the data is absent (a
    lent GPU machine): the resize of a 256-px image is the identity, so fits see the same
    pixels as from the files. ``settings``: how they were built, checked by ``load_sets``."""
    from oddeye.preprocess import load_resized

    arrays: dict[str, np.ndarray] = {"names": np.array(list(sets)),
                                     "settings": np.array(settings)}
    for i, (fit, imgs, y, ms) in enumerate(sets.values()):
        arrays[f"fit{i}"] = np.stack(load_resized(fit, 256))
        arrays[f"imgs{i}"] = np.stack(imgs)
        arrays[f"y{i}"] = np.asarray(y)
        arrays[f"ms{i}"] = np.stack(ms)
    np.savez_compressed(path, **arrays)


def load_sets(path: str | Path, settings: str = "") -> dict[str, tuple]:
    """The sets ``save_sets`` wrote: {name: (fitting images, eval images, labels, masks)}; a
    ``ValueError`` when they were built with other ``settings``."""
    with np.load(path) as z:
        if str(z["settings"]) != settings:
            raise ValueError(f"{path} holds sets built with {z['settings']}, not {settings}: "
                             f"remove it or name another file")
        return {str(name): (list(z[f"fit{i}"]), list(z[f"imgs{i}"]), z[f"y{i}"], z[f"ms{i}"])
                for i, name in enumerate(z["names"])}


def build_sets(tmp: str | Path, datasets: Sequence[str],
               synthetic: Sequence[str] = ("noise", "nut"), native: bool = False,
               kinds: tuple[str, ...] | None = None, placement: str = "inner",
               max_fit: int | None = 100, split_seed: int = 0) -> dict[str, tuple]:
    """{set name: (fitting images, eval images, labels, masks)}: the synthetic classes
    (generated under ``tmp``, which must outlive the fits; none when ``synthetic`` is empty)
    and every real set of ``datasets`` present under the shared data folder
    (``validation_split`` with seed ``split_seed``); ``run`` says what the arguments mean."""
    from oddeye.bench.detection_suite import DATASETS, shared_root
    from oddeye.data.mvtec import load_dataset, load_sample_mask
    from oddeye.data.synth import generate
    from oddeye.preprocess import load_resized, resize_mask

    sets: dict[str, tuple] = {}
    root = generate(Path(tmp) / "s", seed=1, classes=list(synthetic), n_train=30,
                    n_test_good=6, n_test_defect=2) if synthetic else None
    for cat in load_dataset(root) if root else []:
        test = cat.test
        imgs = load_resized([s.path for s in test], 256)
        ms = np.stack([resize_mask(load_sample_mask(s, (256, 256)), 256) for s in test])
        sets[f"synthetic/{cat.name}"] = ([s.path for s in cat.train], imgs,
                                         np.array([s.label for s in test]), ms)
    for ds in datasets:
        path = shared_root() / DATASETS[ds]
        if path.exists():
            cat = load_dataset(path)[0]
            later = [s.path for s in cat.validation]
            name = f"{ds} ({'validation/good' if later else 'pseudo'})"
            sets[name] = validation_split([s.path for s in cat.train], None if native else 256,
                                          seed=split_seed, later=later, kinds=kinds,
                                          placement=placement, max_fit=max_fit)
    return sets


def run(out_path: str | Path | None = None, method: str = "patchcore",
        candidates: dict[str, dict] | None = None, datasets: list[str] | None = None,
        synthetic: tuple[str, ...] = ("noise", "nut"), section: str | None = None,
        native: bool = False, kinds: tuple[str, ...] | None = None,
        placement: str = "inner", title: str | None = None, max_fit: int | None = 100,
        sets_file: str | Path | None = None, split_seed: int = 0) -> str:
    """Score each candidate on validation-only data and write the section
    ``section`` (default ``selection-<method>``). ``native``: real validation images at their
    own resolution (for candidates of different input sizes), else resized to 256. ``kinds``:
    the real sets' pseudo-defect kinds (default ``oddeye.data.pseudo.KINDS``); ``placement``:
    where they may sit (``inner``, off the border, or ``anywhere``); ``title``: the section's
    heading when the rows are not candidates for a default (e.g. an ablation); ``max_fit``: the
    real sets' fitting images at most (``None``: all of ``train/good`` not validated on; the
    bank's coverage, hence a coreset's approximation, depends on it). ``sets_file``: load the
    sets from this ``.npz`` when it exists (built by an earlier run with the same settings:
    the data folders are then not read), else build them and save them there. ``split_seed``:
    which good images are held out for validation and which pseudo-defects they get (0, the
    draw of every run before the twenty-third session)."""
    from oddeye.bench.detection_suite import DATASETS
    from oddeye.bench.results import DEFAULT_RESULTS, write_section

    candidates = candidates or CANDIDATES
    datasets = datasets or list(DATASETS)
    saved = sets_file is not None and Path(sets_file).exists()
    if sets_file is not None and native:
        raise ValueError("a sets file holds 256-px images: not with native=True")
    settings = json.dumps({"datasets": list(datasets), "synthetic": list(synthetic),
                           "kinds": list(kinds or []), "placement": placement,
                           "max_fit": max_fit,
                           **({"split_seed": split_seed} if split_seed else {})})
    with tempfile.TemporaryDirectory() as tmp:
        if saved:
            sets = load_sets(sets_file, settings)
        else:
            sets = build_sets(tmp, datasets, synthetic, native, kinds, placement, max_fit,
                              split_seed)
            if sets_file is not None:
                save_sets(sets_file, sets, settings)
        results: dict[str, dict[str, dict]] = {}
        for name, params in candidates.items():
            results[name] = {}
            for sname, (fit, imgs, y, ms) in sets.items():
                r = score_candidate(method, params, fit, imgs, y, ms)
                results[name][sname] = r
                print(f"{name:32s} {sname:24s} img {r['image_auroc']:.3f} "
                      f"px {r['pixel_auroc']:.3f} {r['seconds']:.0f}s", file=sys.stderr,
                      flush=True)
    body = render(method, section, candidates, results, synthetic, native, kinds, placement,
                  title, max_fit, split_seed)
    write_section(section or f"selection-{method}", body, out_path or DEFAULT_RESULTS)
    return body


def seeded(candidates: dict[str, dict], section: str, seed: int) -> tuple[dict[str, dict], str]:
    """Every candidate fitted with ``seed``, and its section name (``<section>-seed<S>``; seed 0
    keeps the plain name and the method's default seed, as the first runs of each script)."""
    if not seed:
        return candidates, section
    return {k: {**v, "seed": seed} for k, v in candidates.items()}, f"{section}-seed{seed}"


def seed_parser(doc: str | None) -> argparse.ArgumentParser:
    """Command line of a selection script: ``--seed S`` reruns its candidates at another seed,
    ``--placement anywhere`` puts the real sets' pseudo-defects anywhere, border included,
    ``--kinds K...`` draws the real sets' pseudo-defects from other kinds."""
    from oddeye.data.pseudo import ALL_KINDS, PLACEMENTS

    ap = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="seed of every fit")
    ap.add_argument("--placement", choices=list(PLACEMENTS), default="inner",
                    help="where the real sets' pseudo-defects may sit (default inner: off the "
                         "border, as the first runs of every script)")
    ap.add_argument("--kinds", nargs="+", choices=list(ALL_KINDS), default=None,
                    help="the real sets' pseudo-defect kinds, in turn (default: "
                         "oddeye.data.pseudo.KINDS, as every run before the seventeenth "
                         "session; other kinds name the section, e.g. -stain)")
    ap.add_argument("--max-fit", type=int, default=100, metavar="N",
                    help="real sets: fit on at most N images of train/good (default 100, as "
                         "every run before the eighteenth session); 0 = all not validated on, "
                         "which names the section -full")
    ap.add_argument("--sets", metavar="FILE.npz", default=None,
                    help="load the validation sets from FILE when it exists, else build and "
                         "save them there (to rerun them where the data is absent)")
    ap.add_argument("--split-seed", type=int, default=0, metavar="S",
                    help="draw the real sets' validation images and pseudo-defects with seed S "
                         "(default 0, as every run before the twenty-third session; another "
                         "names the section -split<S>)")
    ap.add_argument("--real-only", action="store_true",
                    help="leave the synthetic classes out (names the section -real)")
    ap.add_argument("--only", nargs="+", metavar="NAME", default=None,
                    help="run only these candidates (as named in the script)")
    ap.add_argument("--device", default=None,
                    help="fit and score every candidate on this device (e.g. cuda)")
    ap.add_argument("--out", metavar="FILE.md", default=None,
                    help="results file to write the section to (default benchmarks/RESULTS.md)")
    return ap


def seed_kwargs(args: argparse.Namespace) -> dict:
    """``run_seeded``'s keyword arguments from a ``seed_parser`` command line."""
    return {"kinds": args.kinds, "max_fit": args.max_fit, "sets_file": args.sets,
            "only": args.only, "device": args.device, "out_path": args.out,
            "split_seed": args.split_seed, "real_only": args.real_only}


def kinds_suffix(kinds: Sequence[str] | None) -> str:
    """The section-name suffix of a run with other pseudo-defect kinds than the default:
    ``-stain`` for the defaults plus ``stain``, ``-kinds-blob-stain`` for any other list."""
    from oddeye.data.pseudo import KINDS

    if not kinds or tuple(kinds) == KINDS:
        return ""
    if tuple(kinds[:len(KINDS)]) == KINDS:
        return "-" + "-".join(kinds[len(KINDS):])
    return "-kinds-" + "-".join(kinds)


def run_seeded(method: str, section: str, candidates: dict[str, dict], seed: int,
               placement: str = "inner", title: str | None = None,
               kinds: Sequence[str] | None = None, max_fit: int | None = 100,
               sets_file: str | None = None, only: Sequence[str] | None = None,
               device: str | None = None, out_path: str | None = None, split_seed: int = 0,
               real_only: bool = False) -> str:
    """``run`` with ``seeded`` candidates and section (``-anywhere`` appended to the section
    name for pseudo-defects placed anywhere, ``kinds_suffix`` for other kinds, ``-full`` when
    fitting on every training image: ``max_fit`` 0 or None, ``-fit<N>`` for another cap).
    ``only`` keeps those candidates; ``device`` fits them there (``-<device>`` in the section
    name, so GPU rows never replace CPU ones). PatchCore candidates that all leave ``cosine`` at
    its default (True since the twenty-seventh session) name the section ``-cosine``, so scripts
    written for raw features do not overwrite the raw sections the docs quote."""
    if only:
        unknown = sorted(set(only) - set(candidates))
        if unknown:
            raise SystemExit(f"unknown candidate(s) {unknown}; known: {sorted(candidates)}")
        candidates = {k: v for k, v in candidates.items() if k in only}
    if device:
        candidates = {k: {**v, "device": device} for k, v in candidates.items()}
        section = f"{section}-{device.replace(':', '')}"
    cands, name = seeded(candidates, section, seed)
    if method == "patchcore" and not any("cosine" in c for c in candidates.values()):
        # written when PatchCore compared raw features: runs since its cosine default get
        # their own sections instead of overwriting the raw ones the docs quote
        base, _, tail = name.partition("-seed")
        name = f"{base}-cosine" + (f"-seed{tail}" if tail else "")
    max_fit = max_fit or None
    suffix = ((f"-{placement}" if placement != "inner" else "") + kinds_suffix(kinds)
              + ("" if max_fit == 100 else "-full" if max_fit is None else f"-fit{max_fit}")
              + (f"-split{split_seed}" if split_seed else "") + ("-real" if real_only else ""))
    if suffix:
        base, _, tail = name.partition("-seed")
        name = f"{base}{suffix}" + (f"-seed{tail}" if tail else "")
    return run(out_path=out_path, method=method, section=name, candidates=cands,
               placement=placement, title=title, kinds=tuple(kinds) if kinds else None,
               max_fit=max_fit, sets_file=sets_file, split_seed=split_seed,
               **({"synthetic": ()} if real_only else {}))


def render(method: str, section: str | None, candidates: dict[str, dict],
           results: dict[str, dict[str, dict]], synthetic: tuple[str, ...], native: bool,
           kinds: tuple[str, ...] | None, placement: str = "inner",
           title: str | None = None, max_fit: int | None = 100, split_seed: int = 0) -> str:
    """The section's markdown: one row per candidate (``results[candidate][set]`` holds the
    metrics and ``seconds`` of one fit), the means over sets, and the best candidate."""
    set_names = list(next(iter(results.values())))

    def mean_of(name: str, key: str) -> float:
        return float(np.nanmean([results[name][s][key] for s in set_names]))

    kind_text = ("cut-paste, blob, scratch" if not kinds else ", ".join(
        {"cutpaste": "cut-paste", "swap": "swap (a large region from the same place of the most "
         "different validation image)", "stain": "stain (a large irregular region of faintly "
         "changed tone or texture)", "contrast": "contrast (a large irregular region whose "
         "texture is flattened or amplified around its local mean)"}.get(k, k) for k in kinds))
    heading = f"## {title or f'Selection of {method} defaults'} (no test split used)"
    lines = [heading + (f": `{section}`" if section else ""), "",
             "Real sets: "
             + (f"at most {max_fit} fitting images" if max_fit else "every other image")
             + " from `train/good` and at most 24 validation "
             "images, from the set's `validation/good` where it has one (a later acquisition), "
             "else the other 20% of `train/good`; each validation image plus two "
             f"pseudo-anomalous copies ({kind_text} at severity {SEVERITY}, kinds in turn; "
             + ("placed anywhere, border included; " if placement == "anywhere" else "")
             + "`oddeye.data.pseudo`"
             + (f"; validation images and pseudo-defects drawn with seed {split_seed}"
                if split_seed else "") + "). "
             + (f"Synthetic: `oddeye synth --seed 1` classes {', '.join(synthetic)} (not the "
                "demo/test seed). " if synthetic else "No synthetic classes. ")
             + ("Real validation images and their pseudo-defects at the images' own resolution, "
                "resized by each candidate; pixel metrics at each candidate's size. "
                if native else "")
             + "Cells: image AUROC / pixel AUROC. Seconds: wall time of fit + scoring summed "
             "over the sets (one process, on whatever else the machine ran: a cost indication, "
             "not a timing benchmark).", "",
             "| candidate | " + " | ".join(set_names) + " | mean img | mean px | seconds |",
             "|---|" + "---|" * (len(set_names) + 3)]
    for name in candidates:
        cells = " | ".join(f"{results[name][s]['image_auroc']:.3f} / "
                           f"{results[name][s]['pixel_auroc']:.3f}" for s in set_names)
        seconds = sum(results[name][s]["seconds"] for s in set_names)
        lines.append(f"| {name} | {cells} | {mean_of(name, 'image_auroc'):.3f} | "
                     f"{mean_of(name, 'pixel_auroc'):.3f} | {seconds:.0f} |")
    best = max(candidates, key=lambda n: mean_of(n, "image_auroc") + mean_of(n, "pixel_auroc"))
    lines += ["", f"Best by mean image + pixel AUROC: **{best}** "
              f"(`{json.dumps(candidates[best])}`)."]
    return "\n".join(lines)
