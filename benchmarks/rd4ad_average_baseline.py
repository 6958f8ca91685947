"""Today's machine, today's code: the default RD4AD (last weights) refitted on the selection
suite's sets at seed 0, because the stored baseline row came from another machine and its fits
do not reproduce bit for bit across machines (synthetic/noise: 0.983 / 0.972 stored, 0.983 /
0.970 refitted here, by the same ``score_candidate`` call in a scratch script run first, so
this script fits the other four sets only). Writes section
``selection-rd4ad-average-baseline``. Run: ``.venv/bin/python
benchmarks/rd4ad_average_baseline.py``."""

from oddeye.bench.selection_suite import run

if __name__ == "__main__":
    run(method="rd4ad", candidates={"default (last weights), refitted this session": {}},
        synthetic=("nut",), section="selection-rd4ad-average-baseline")
