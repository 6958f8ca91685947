"""PatchCore variants over seeds on the shared sets' test splits (reports; chooses nothing).

``--study chunk-order``: independent coreset chunks (the default) vs sequential chunks
(``sequential_chunks=True``, closer to the exact greedy loop's coverage; docs/methods.md).
``--study position``: no position term vs ``position="auto"`` (the default since the eighth
session), which chooses a weight per training set on held-out training images; with another
seed it holds out other images and may choose another weight. ``--study pad``: no input frame
vs a 16-pixel one (``pad``, twelfth session; its tap-cropping order pinned, as it ran).
``--study frame-order``: the 16-px frame cropped from every tap before the aggregation
(``frame_crop="taps"``) vs cut from the aggregated embedding (the default since the thirteenth
session). ``--study pool-zeros``: that default vs no frame and the border cells' average
counting the zero padding (``pool_zeros=True``, an option). ``--study grid``: the patch grid
of the first tap (default) vs the last (``grid="last"``, seventeenth session). ``--study
fusion``: MobileNetV2 vs MobileNetV2 + EfficientNet-Lite0 fused (twenty-sixth session).
``--study cosine``: stages as the backbone gives them vs at unit length (``cosine=True``,
twenty-seventh session). ``--study magnitude``: that default vs ``magnitude=2`` (twenty-eighth
session). The
first two studies run without the frame, as they did when their sections were written. Three seeds
each (the seed draws the held-out images, the coreset's chunk permutation and start); each
(set, seed, variant) is one process of the detection suite, whose JSON in ``--work`` is reused
when it exists. Writes section ``patchcore-<study>`` (``-cosine`` for a study whose variants
leave PatchCore's ``cosine`` at its default, True since the twenty-seventh session: they then
run with it set, so no raw-era JSON in ``--work`` is reused).

Run: .venv/bin/python benchmarks/patchcore_chunk_order.py --work /tmp/chunk-order
     [--study position|pad|frame-order|pool-zeros|grid|throwaway|fusion|cosine|magnitude]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from oddeye.bench.detection_suite import DATASETS, shared_root
from oddeye.bench.results import DEFAULT_RESULTS, write_section

KEYS = ("image_auroc", "pixel_auroc", "pixel_aupro")
REUSED: list[str] = []  # runs read from --work instead of refitted by this command
#: study -> (title, what differs, column name, {variant: parameters})
STUDIES = {
    "chunk-order": ("PatchCore: independent vs sequential coreset chunks",
                    "Default parameters but the chunk order (no position term, no input frame)",
                    "chunks",
                    {"independent (default)": {"position": 0.0, "pad": 0},
                     "sequential": {"position": 0.0, "sequential_chunks": True, "pad": 0}}),
    "position": ("PatchCore: position term chosen per training set",
                 "Default parameters but the position term (`position`; `auto` reports the "
                 "weight it chose as `w=`) and no input frame; `none` computes what the "
                 "independent rows of section `patchcore-chunk-order` computed (weight 0 adds "
                 "no columns)", "position",
                 {"none (before)": {"position": 0.0, "pad": 0},
                  "auto (default)": {"pad": 0}}),
    "pad": ("PatchCore: input frame (`pad`)",
            "Default parameters (`position=\"auto\"`: `w=` is the weight it chose) but the input "
            "frame: 0 (before) or 16 px of the ImageNet mean colour (docs/backbones.md)", "pad",
            {"0 (before)": {"pad": 0}, "16": {"pad": 16, "frame_crop": "taps"}}),
    "frame-order": ("PatchCore: where the input frame is cut (`frame_crop`)",
                    "Default parameters (16-px frame; `position=\"auto\"`: `w=` is the weight "
                    "it chose) but the frame's crop: from every tap before the 3 x 3 "
                    "aggregation (`taps`, before; the `16` rows of section `patchcore-pad`) or "
                    "from the aggregated embedding (`aggregated`)", "frame cut",
                    {"taps (before)": {"frame_crop": "taps"}, "aggregated (default)": {}}),
    "pool-zeros": ("PatchCore: zero-counting border pooling instead of the frame",
                   "Default parameters (`position=\"auto\"`: `w=` is the weight it chose) but "
                   "the border: the 16-px frame cut after aggregation (default; the `aggregated` "
                   "rows of section `patchcore-frame-order`) or no frame and the 3 x 3 average "
                   "counting the zero padding (`pad=0, pool_zeros=True`)", "border",
                   {"16-px frame (default)": {}, "zeros pooled": {"pad": 0, "pool_zeros": True}}),
    "grid": ("PatchCore: patch grid (`grid`)",
             "Default parameters (`position=\"auto\"`: `w=` is the weight it chose) but the patch "
             "grid: the cells of the first tap, s8 (default, the paper's) or of the last, s16, "
             "with s8 averaged over each 2 x 2 block (`grid=\"last\"`); maps and metrics at 256 "
             "px either way", "grid",
             {"first (default)": {}, "last": {"grid": "last"}}),
    "throwaway": ("PatchCore: a plain build like the issue's throwaway",
                  "Default parameters (`position=\"auto\"`: `w=` is the weight it chose), then "
                  "what a quick PatchCore on `F.avg_pool2d` would do: no frame, the 3 x 3 "
                  "average counting the zero padding, no position term (`pad=0, "
                  "pool_zeros=True, position=0`), with the default chunked coreset and with "
                  "the exact greedy loop (`chunk_size=None`); a diagnosis of where the "
                  "issue's floors came from, not a choice", "build",
                  {"default": {},
                   "plain, chunked coreset": {"pad": 0, "pool_zeros": True, "position": 0.0},
                   "plain, exact coreset": {"pad": 0, "pool_zeros": True, "position": 0.0,
                                            "chunk_size": None}}),
    "fusion": ("PatchCore: two backbones fused at the map level",
               "Default parameters (`position=\"auto\"`: `w=` is the weight it chose) on "
               "MobileNetV2 (default) or on `backbone=\"mobilenet_v2+efficientnet_lite0\"`: "
               "one bank per backbone, each raw map standardised on the good images the "
               "threshold uses (`validation/good` for tire, else the held-out tenth of "
               "`train/good`), summed (`oddeye.methods.fusion`)", "backbone",
               {"mobilenet_v2 (default)": {},
                "mobilenet_v2+efficientnet_lite0":
                    {"backbone": "mobilenet_v2+efficientnet_lite0"}}),
    "cosine": ("PatchCore: patches compared by direction (`cosine`)",
               "Default parameters of the twenty-sixth session (`position=\"auto\"`: `w=` is "
               "the weight it chose) with each stage's patch vector as the backbone gives it, "
               "scaled by `1/sqrt(channels)` (`cosine=False`: what the `mobilenet_v2 "
               "(default)` rows of section `patchcore-fusion` computed), or at unit length "
               "(`cosine=True`, the default since the twenty-seventh session)", "patches",
               {"raw (before)": {"cosine": False}, "cosine (default)": {"cosine": True}}),
    "magnitude": ("PatchCore: the stages' lengths back in the cosine comparison (`magnitude`)",
                  "Default parameters (`cosine=True`; `position=\"auto\"`: `w=` is the weight "
                  "it chose) without (default) or with `magnitude=2`: each stage's "
                  "`2 log|v| / sqrt(stages)` as one more column (twenty-eighth session)",
                  "patches",
                  {"cosine (default)": {"cosine": True},
                   "magnitude 2": {"cosine": True, "magnitude": 2.0}}),
}


def study(name: str) -> tuple[str, str, str, dict[str, dict], str]:
    """(title, what differs, column, variants, section) of a study. One written for raw
    features (no variant sets ``cosine``) runs on the cosine default with ``cosine=True`` set,
    so its run names never reuse a raw-era JSON from the same ``--work`` folder, and writes
    ``patchcore-<study>-cosine`` instead of the raw section the docs quote."""
    title, what, column, variants = STUDIES[name]
    if any("cosine" in v for v in variants.values()):
        return title, what, column, variants, f"patchcore-{name}"
    return (title, what + " (rerun on the cosine default, `cosine=True`)", column,
            {k: {**v, "cosine": True} for k, v in variants.items()},
            f"patchcore-{name}-cosine")


def fit(work: Path, ds: str, seed: int, params: dict, threads: int) -> dict:
    """One detection-suite run of PatchCore (reused from ``work`` when already there)."""
    tag = "-".join([ds, f"seed{seed}", *(f"{k}{v}" for k, v in sorted(params.items()))])
    out = work / f"{tag}.json"
    if out.exists():
        REUSED.append(tag)
    else:
        print(f"patchcore {tag} ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "oddeye.bench.detection_suite", "--method",
                        "patchcore", "--data", str(shared_root() / DATASETS[ds]), "--params",
                        json.dumps({**params, "seed": seed}), "--threads", str(threads),
                        "--json", str(out)], check=True)
    return json.loads(out.read_text())


def chosen(run: dict) -> str:
    """" (w=W)" when the run's model chose a position weight, else ""."""
    weight = run.get("position_weight")
    return "" if weight is None else f" (w={weight:g})"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", required=True, help="folder keeping each run's JSON")
    p.add_argument("--datasets", nargs="+", default=["tire", "deeppcb", "magnetic_tile"],
                   choices=sorted(DATASETS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(DEFAULT_RESULTS))
    p.add_argument("--study", choices=sorted(STUDIES), default="chunk-order")
    a = p.parse_args(argv)
    title, what, column, variants, section = study(a.study)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    names = [ds for ds in a.datasets if (shared_root() / DATASETS[ds]).exists()]
    if not names:
        print(f"no shared data set under {shared_root()} (set ODDEYE_SHARED_DATA)", file=sys.stderr)
        return 1
    res = {(ds, v, s): fit(work, ds, s, params, a.threads)
           for s in a.seeds for ds in names for v, params in variants.items()}
    lines = [f"## {title}", "",
             f"{what}; 10,000-patch bank (the cap); seeds "
             f"{', '.join(map(str, a.seeds))} (held-out draw, chunk permutation, start). Cells: "
             "image AUROC / pixel AUROC / AUPRO@0.3 on the test split; fit s = whole "
             "`Detector.fit`, ms = the detection suite's inference time per image at batch 1, "
             f"both medians over seeds ({a.threads} threads).", "",
             f"| data | {column} | " + " | ".join(f"seed {s}" for s in a.seeds)
             + " | mean | fit s | ms |",
             "|---|---|" + "---|" * len(a.seeds) + "---|---|---|"]
    for ds in names:
        for v in variants:
            runs = [res[(ds, v, s)] for s in a.seeds]
            cells = [" / ".join(f"{r[k]:.3f}" for k in KEYS) + chosen(r) for r in runs]
            mean = " / ".join(f"{statistics.mean(r[k] for r in runs):.3f}" for k in KEYS)
            fit_s = statistics.median(r["fit_seconds"] for r in runs)
            ms = statistics.median(r["ms_per_image"] for r in runs)
            lines.append(f"| {ds} | {v} | " + " | ".join(cells)
                         + f" | {mean} | {fit_s:.1f} | {ms:.1f} |")
    if REUSED:
        lines += ["", f"{len(REUSED)} of {len(res)} runs were read from JSON already in "
                  f"`--work`, not refitted by this command: {', '.join(sorted(REUSED))}."]
    body = "\n".join(lines)
    write_section(section, body, a.out)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
