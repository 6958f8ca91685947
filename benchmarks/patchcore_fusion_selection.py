"""Validation-only check of the built two-backbone fusion (no test split used).

``backbone="mobilenet_v2+efficientnet_lite0"`` (``oddeye.methods.fusion``: one PatchCore per
backbone, each raw map standardised on the held-out good images the threshold uses, summed)
against the default MobileNetV2 PatchCore. The twenty-fifth session's script
(``patchcore_backbone_fusion.py``) measured a fusion of smoothed maps outside the Detector; this
runs the built option as users get it: both candidates hold out the Detector's default tenth of
the fitting images (the fusion's standardisation set; the suite's other scripts hold none out).
``--method padim`` runs the same two candidates with PaDiM instead. Writes section
``selection-<method>-fusion-built`` (``-seed<S>``). PatchCore's members compare patches by
direction (``cosine``, its default since the twenty-seventh session: section suffix ``-cosine``)
unless ``--features raw`` (``cosine=False``, as the twenty-sixth session's sections ran). Run:
``.venv/bin/python benchmarks/patchcore_fusion_selection.py [--method padim] [--seed S]
[--features raw]``.
"""

from oddeye.bench.selection_suite import run_seeded, seed_kwargs, seed_parser

# Both hold out the Detector's default tenth (the selection suite holds none by default): the
# fusion standardises each member on those images, and the plain model fits on the same rest.
CANDIDATES = {
    "mobilenet_v2 (default)": {"holdout": 0.1},
    "mobilenet_v2+efficientnet_lite0": {"backbone": "mobilenet_v2+efficientnet_lite0",
                                        "holdout": 0.1},
}


def plan(method: str, features: str) -> tuple[dict[str, dict], str]:
    """(candidates, section) of a run: PatchCore's pair both get ``cosine`` from ``features``
    (a cosine run names its section ``-cosine`` so the raw sections the docs quote stay);
    PaDiM's pair is the plain one (it has no such parameter)."""
    section = f"selection-{method}-fusion-built"
    if method != "patchcore":
        return CANDIDATES, section
    cosine = features == "cosine"
    return ({k: {**v, "cosine": cosine} for k, v in CANDIDATES.items()},
            section + ("-cosine" if cosine else ""))


if __name__ == "__main__":
    parser = seed_parser(__doc__)
    parser.add_argument("--method", choices=["patchcore", "padim"], default="patchcore")
    parser.add_argument("--features", choices=["cosine", "raw"], default="cosine",
                        help="PatchCore only: how both candidates compare patches (default "
                             "cosine, the method's default; raw = cosine=False)")
    args = parser.parse_args()
    candidates, section = plan(args.method, args.features)
    run_seeded(args.method, section, candidates, args.seed, args.placement,
               **seed_kwargs(args))
