"""Validation-only check of PatchCore's ``image_neighbours`` with the ``swap`` pseudo-defect
(no test split used): the selection suite's data with every kind in turn on the real sets,
cut-paste, blob, scratch and swap (a large region replaced by the same place of the most
different held-out good image: another finish, normal elsewhere). The first validation
(section ``selection-patchcore-image-neighbours``) had only small spots, which the pooled bank
sees already. Writes section ``selection-patchcore-image-neighbours-swap`` (docs/methods.md,
"Image neighbours"). Run: ``.venv/bin/python benchmarks/patchcore_image_neighbours_swap.py``.
"""

from oddeye.bench.selection_suite import run
from oddeye.data.pseudo import ALL_KINDS

if __name__ == "__main__":
    run(method="patchcore", section="selection-patchcore-image-neighbours-swap",
        kinds=ALL_KINDS,
        candidates={"pooled bank (default)": {}, "image_neighbours 20": {"image_neighbours": 20},
                    "image_neighbours 5": {"image_neighbours": 5}})
