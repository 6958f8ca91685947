"""The RD4AD paper's ablation of what the student decodes from, on validation data only (no test
split): the method (``embedding="ocbe"``: multi-scale fusion + a trainable one-class embedding
stage), the trainable stage on the deepest tap alone (``"oce"``: no fusion) and the paper's
"Pre" (``"teacher"``: the frozen teacher's next stage is the embedding). Deng & Li (CVPR 2022)
ablate these parts on MVTec AD with a WideResNet50-2 teacher and report the full OCBE ahead of
the reduced variants; this checks the direction with the default MobileNetV2 teacher. Nothing
is chosen here: the method is the full OCBE. Data: the selection suite's (held-out good images
with pseudo-defects placed anywhere; tire's later ``validation/good``). Writes section
``rd4ad-ablation-embedding-anywhere`` (``-seed<S>`` for ``--seed S``). Run:
``.venv/bin/python benchmarks/rd4ad_embedding_ablation.py [--seed S] [--placement inner]``.
"""

from oddeye.bench.selection_suite import run_seeded, seed_kwargs, seed_parser

CANDIDATES = {
    "ocbe: fusion + trainable stage (the method)": {"embedding": "ocbe"},
    "oce: trainable stage, no fusion": {"embedding": "oce"},
    "teacher: frozen next stage (paper's Pre)": {"embedding": "teacher"},
}

if __name__ == "__main__":
    ap = seed_parser(__doc__)
    ap.set_defaults(placement="anywhere")
    args = ap.parse_args()
    run_seeded("rd4ad", "rd4ad-ablation-embedding", CANDIDATES, args.seed, args.placement,
               title="RD4AD ablation: what the student decodes from", **seed_kwargs(args))
