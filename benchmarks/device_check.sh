#!/usr/bin/env bash
# One prepared check on a lent CUDA machine (the `device` tool), bounded to ~9.5 minutes:
#   1. tests/test_device.py: every method fitted on CUDA vs the CPU, files, CLI, ONNX; and
#      tests/backbones/test_reference_models.py: our backbones against torchvision's and timm's
#      own networks (both installed there, neither here);
#   2. RD4AD on deeppcb, seeds 0-2, plain and pseudo=0.5, six fits side by side on the GPU,
#      while the whole test suite runs there (conftest pins it to the CPU: torch 2.11, 16 threads);
#   3. PatchCore / PaDiM detection figures on the GPU, alone (section detection-cuda);
#   4. RD4AD seconds per epoch on the GPU, alone (5 epochs).
# Needs, carried in .devcarry/ (git-ignored, never committed): weights/ (the backbone files,
# found through ODDEYE_WEIGHTS) and data/deeppcb (MIT licence). Everything lands in
# $OUT/device_check.tgz; tabulate the RD4AD runs here with
#   benchmarks/rd4ad_seeds.py --cached-only --work DIR --datasets deeppcb --seeds 0 1 2 \
#       --threads 2 --param device=cuda [--param pseudo=0.5] --section ...
# selection: a validation-only selection script's candidates on the GPU (SEL_SCRIPT, candidate
# names in SEL_ONLY separated by '|', seeds in SEL_SEEDS, default "0 1"), one process per
# candidate and seed, from the sets file .devcarry/sel_sets.npz (built here by the same script
# with --sets; the data folders need not travel); each process writes its section to
# $W/sel-<i>-<seed>.md and its per-set lines to its log. No device tests beside them: run
# beside six fits they hit their limit after 15 tests (twenty-second session); use `tests`.
# Usage: benchmarks/device_check.sh [tests|bench|detection|rdpp|selection|all]   (detection: step 1, the
# suite alone, then step 3, 5-7 minutes; rdpp: RD4AD on deeppcb, seeds 0-2, defaults and
# projection=true, six fits side by side, with step 1 beside them, 5-7 minutes; separate calls
# keep a failing test cheap)
set -u
STEP=${1:-all}
OUT=${OUT:-/tmp/oddeye-device-check}
W=$OUT/work
mkdir -p "$W"
PY=${PY:-python3}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 ODDEYE_OFFLINE=1
export ODDEYE_WEIGHTS=$PWD/.devcarry/weights ODDEYE_SHARED_DATA=$PWD/.devcarry/data
{ date -u; nvidia-smi -L; nproc; $PY -c "import torch; print(torch.__version__, torch.cuda.is_available())"; } \
  > "$W/env.log" 2>&1
if [ "$STEP" = rdpp ]; then
  t_rd=$(date +%s)
  for s in 0 1 2; do
    for v in plain projection; do
      extra=(); sec=rd4ad-cuda-steps
      if [ $v = projection ]; then extra=(--param projection=true); sec=rd4ad-cuda-projection; fi
      timeout 420 $PY benchmarks/rd4ad_seeds.py --seeds $s --datasets deeppcb --threads 2 \
        --work "$W/rd" --out "$W/scratch.md" --param device=cuda ${extra[@]+"${extra[@]}"} --section $sec \
        > "$W/rd-$v-$s.log" 2>&1 &
    done
  done
fi
if [ "$STEP" = selection ]; then
  t_sel=$(date +%s)
  IFS='|' read -r -a names <<< "${SEL_ONLY:?name the candidates}"
  i=0
  for name in "${names[@]}"; do
    for s in ${SEL_SEEDS:-0 1}; do
      OMP_NUM_THREADS=2 timeout "${SEL_LIMIT:-480}" $PY "$SEL_SCRIPT" --seed "$s" --device cuda \
        --sets .devcarry/sel_sets.npz --only "$name" --out "$W/sel-$i-$s.md" \
        > "$W/sel-$i-$s.log" 2>&1 &
    done
    i=$((i + 1))
  done
fi
if [ "$STEP" != bench ] && [ "$STEP" != selection ]; then
  t0=$(date +%s)
  timeout 200 $PY -m pytest -q -p no:cacheprovider -rfEs tests/test_device.py \
    tests/backbones/test_reference_models.py > "$W/test_device.log" 2>&1
  echo "test_device rc=$? $(( $(date +%s) - t0 )) s" >> "$W/steps.log"
  cat "$W/test_device.log"
fi
if [ "$STEP" = tests ]; then tar czf "$OUT/device_check.tgz" -C "$OUT" work; exit 0; fi
if [ "$STEP" = selection ]; then
  wait
  echo "selection done $(( $(date +%s) - t_sel )) s" >> "$W/steps.log"
  tar czf "$OUT/device_check.tgz" -C "$OUT" work
  exit 0
fi
if [ "$STEP" = rdpp ]; then
  wait
  echo "rd4ad fits done $(( $(date +%s) - t_rd )) s" >> "$W/steps.log"
  tar czf "$OUT/device_check.tgz" -C "$OUT" work
  exit 0
fi

if [ "$STEP" != detection ]; then
t0=$(date +%s)
for s in 0 1 2; do
  timeout 280 $PY benchmarks/rd4ad_seeds.py --seeds $s --datasets deeppcb --threads 2 --work "$W/rd" \
    --out "$W/scratch.md" --param device=cuda --section rd4ad-cuda > "$W/rd-plain-$s.log" 2>&1 &
  timeout 280 $PY benchmarks/rd4ad_seeds.py --seeds $s --datasets deeppcb --threads 2 --work "$W/rd" \
    --out "$W/scratch.md" --param device=cuda --param pseudo=0.5 --section rd4ad-cuda-pseudo \
    > "$W/rd-pseudo-$s.log" 2>&1 &
done
OMP_NUM_THREADS=2 timeout 275 $PY -m pytest -q -p no:cacheprovider -rfE tests > "$W/suite.log" 2>&1
echo "suite rc=$? $(( $(date +%s) - t0 )) s" >> "$W/steps.log"
wait
echo "rd4ad seeds done $(( $(date +%s) - t0 )) s" >> "$W/steps.log"
else
t0=$(date +%s)
OMP_NUM_THREADS=2 timeout 200 $PY -m pytest -q -p no:cacheprovider -rfE tests > "$W/suite.log" 2>&1
echo "suite rc=$? $(( $(date +%s) - t0 )) s" >> "$W/steps.log"
fi

t0=$(date +%s)
cp benchmarks/RESULTS.md "$W/RESULTS.md"
timeout 150 $PY -m oddeye.cli benchmark --suite detection --methods patchcore padim \
  --datasets synthetic deeppcb --param device=cuda --section detection-cuda --out "$W/RESULTS.md" \
  > "$W/detection.log" 2>&1
echo "detection rc=$? $(( $(date +%s) - t0 )) s" >> "$W/steps.log"
if [ "$STEP" = detection ]; then tar czf "$OUT/device_check.tgz" -C "$OUT" work; exit 0; fi

t0=$(date +%s)
timeout 45 $PY -m oddeye.bench.rd4ad_suite --part category --data deeppcb \
  --params '{"device": "cuda", "epochs": 5}' --threads 2 --json "$W/rd4ad-speed.json" \
  > "$W/rd4ad-speed.log" 2>&1
echo "rd4ad speed rc=$? $(( $(date +%s) - t0 )) s" >> "$W/steps.log"
tar czf "$OUT/device_check.tgz" -C "$OUT" work
