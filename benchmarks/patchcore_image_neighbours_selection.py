"""Validation-only check of PatchCore's ``image_neighbours`` option (no test split used): the
selection suite's data (held-out good images with pseudo-defects) scored by the pooled bank
(the default) and by each image's 20 nearest training images. Writes section
``selection-patchcore-image-neighbours`` of benchmarks/RESULTS.md (docs/methods.md, "Image
neighbours"). Run: ``.venv/bin/python benchmarks/patchcore_image_neighbours_selection.py``.
"""

from oddeye.bench.selection_suite import run

if __name__ == "__main__":
    run(method="patchcore", section="selection-patchcore-image-neighbours",
        candidates={"pooled bank (default)": {},
                    "image_neighbours 20": {"image_neighbours": 20}})
