"""Today's machine, today's code: the default RD4AD (last weights) refitted on the selection
suite's sets at seed 0, because the stored baseline row came from another machine and its fits
do not reproduce bit for bit across machines (synthetic/noise: 0.983 / 0.972 stored, 0.983 /
0.970 refitted here). synthetic/noise was refitted separately (/tmp/s21/repro.py). Writes
section ``selection-rd4ad-average-baseline``."""

from oddeye.bench.selection_suite import run

if __name__ == "__main__":
    run(method="rd4ad", candidates={"default (last weights), refitted this session": {}},
        synthetic=("nut",), section="selection-rd4ad-average-baseline")
