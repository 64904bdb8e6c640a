#!/usr/bin/env bash
# The GPU measurement (speed, bf16, a suite, the CUDA tests), one command of under 5 minutes:
#
#   benchmarks/gpu_check.sh OUT [--tiny] [--wheels DIR]
#
# 1. set-up: what the machine lacks (submitit, torch-fidelity, pythae and small dependencies),
#    pip-installed offline from --wheels DIR, $VAEBENCH_WHEELS, wheels/ or shared/wheels/
#    (cp312 wheels that travel with the tree; docs/speed.md says how to make the folder);
# 2. python -m benchmarks.speed on synthetic CIFAR-10 (ResNet, batch 100): vaebench vs the
#    tutorial loop vs pythae, the second stage, 10k vs 10k FID + KID + precision/recall through
#    Inception-v3 under seeded random weights (--random-inception 0: the converted FID weights do
#    not travel), the paper protocol's projection; then --bf16 and --compile (training only);
# 3. the cifar10 suite (every row, 2 seeds) at reduced epochs through benchmarks.run --jobs 12
#    against its slowest single run (balanced, two-stage);
# 4. the CUDA correctness tests (pytest -m gpu tests/test_cuda.py).
# Every step runs under `timeout`, so one that fails or hangs loses only itself. What it writes
# is packed into OUT/gpu_check.tar.gz beside OUT/summary.md (2 files). --tiny runs every step
# on the CPU at a tiny setting (tests/test_gpu_check.py). VAEBENCH_COMMIT names the commit
# where the copy of the repository has no .git.
# Exit status: 0 done (also -h/--help), 1 a step failed (recorded in summary.md, the script goes
# on; a step that failed saves no figure, so none of its numbers reach the summary), 2 refused
# input (the message names the argument, the value and what is allowed).
set -u
usage() { echo "usage: $0 OUT [--tiny] [--wheels DIR]; exit status 0 done (also --help), 2 refused input" >&2; }
refuse() { echo "error: $1" >&2; usage; exit 2; }
case ${1:-} in -h|--help) usage 2>&1; exit 0 ;; esac
[ $# -ge 1 ] || refuse "OUT missing: give the output folder first"
case $1 in -*) refuse "OUT=$1 looks like an option; give the output folder first, then --tiny or --wheels DIR" ;; esac
OUT=$1; shift
TINY=0; WHEELS=${VAEBENCH_WHEELS:-}
while [ $# -gt 0 ]; do
  case $1 in
    --tiny) TINY=1 ;;
    --wheels) [ $# -ge 2 ] || refuse "--wheels needs a folder of wheels"
              [ -d "$2" ] || refuse "--wheels $2 is not a folder; give a folder of .whl files"
              WHEELS=$2; shift ;;
    *) refuse "unknown argument $1; allowed: --tiny, --wheels DIR" ;;
  esac
  shift
done
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
rm -rf "$OUT/files"  # a killed earlier check's files must not pass for this one's figures
mkdir -p "$OUT/files" && OUT=$(cd "$OUT" && pwd)
F=$OUT/files
cd "$REPO" || exit 1
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
START=$(date +%s)
STEPS=()
FAILED=0

step() {  # step NAME LIMIT_S COMMAND...: under timeout, its output in files/NAME.log
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "== $name (limit ${limit}s): $*"
  timeout -k 10 "$limit" "$@" > "$F/$name.log" 2>&1
  local rc=$?
  [ "$rc" = 0 ] || FAILED=$((FAILED + 1))
  STEPS+=("| $name | $rc | $(( SECONDS - t0 )) |")
  echo "   exit $rc after $(( SECONDS - t0 )) s; $(tail -n 1 "$F/$name.log")"
}

# ---- set-up ----------------------------------------------------------------------------------
if [ -z "$WHEELS" ]; then for d in wheels shared/wheels; do [ -d "$d" ] && WHEELS=$d && break; done; fi
for pkg in submitit torch_fidelity pythae; do
  if "$PY" -c "import $pkg" 2>/dev/null; then echo "$pkg: already there"
  elif [ -n "$WHEELS" ]; then
    timeout 120 "$PY" -m pip install -q --no-index --find-links "$WHEELS" "${pkg//_/-}" || echo "$pkg: not installed"
  else echo "$pkg: absent and no wheels folder"; fi
done > "$F/setup.log" 2>&1
(command -v nvidia-smi > /dev/null && nvidia-smi) > "$F/nvidia-smi.txt" 2>&1 || echo "no nvidia-smi" > "$F/nvidia-smi.txt"
COMMIT=${VAEBENCH_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}

if [ "$TINY" = 1 ]; then  # every step on the CPU, on digits, in seconds
  cat > "$F/tiny.toml" <<'EOF'
name = "tiny"
description = "two tiny digits runs (gpu_check.sh --tiny)"
dataset = "digits"
[config]
epochs = 1
n_train = 200
eval_images = 50
fid = false
[[runs]]
label = "beta"
variant = "beta"
[[runs]]
label = "balanced"
variant = "balanced"
EOF
  COMMON=(--dataset digits --device cpu --n-train 100 --rounds 1 --out "$F/speed")
  MAIN=(--parts train,stage2,eval --stage2-epochs 1 --eval-images 4 --eval-batch 4 --random-inception 0)
  SUITE=(--parts suite --suite "$F/tiny.toml" --suite-seeds 1 --suite-set n_train=100 eval_images=20 --jobs 2)
  L_MAIN=240; L_FAST=240; L_SUITE=240; L_TESTS=240  # a busy 2-core CPU: seconds when idle
else
  COMMON=(--dataset cifar10 --synthetic --device cuda --n-train 10000 --rounds 3 --out "$F/speed")
  MAIN=(--parts train,pythae,stage2,eval --stage2-epochs 4 --eval-images 10000 --eval-batch 500 --random-inception 0)
  SUITE=(--parts suite --suite cifar10 --suite-seeds 2 --suite-epochs-scale 0.002 --jobs 12)
  L_MAIN=100; L_FAST=35; L_SUITE=70; L_TESTS=60
fi
step speed "$L_MAIN" "$PY" -m benchmarks.speed "${COMMON[@]}" "${MAIN[@]}"
step speed_bf16 "$L_FAST" "$PY" -m benchmarks.speed "${COMMON[@]}" --parts train --bf16
[ "$TINY" = 1 ] || step speed_compile "$((L_FAST + 25))" "$PY" -m benchmarks.speed "${COMMON[@]}" --parts train --compile
step suite "$L_SUITE" "$PY" -m benchmarks.speed "${COMMON[@]}" "${SUITE[@]}" --out "$F/suite"
step cuda_tests "$L_TESTS" "$PY" -m pytest -o addopts="" -m gpu tests/test_cuda.py -q -rs -p no:cacheprovider

# ---- summary.md and the tarball ----------------------------------------------------------------
{
  echo "# GPU check: $(head -n 12 "$F/nvidia-smi.txt" | grep -o 'NVIDIA [A-Z0-9 ]*[0-9]' | head -n 1 || true)"
  echo
  echo "commit $COMMIT; $("$PY" -c 'import torch, platform; print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, Python {platform.python_version()}")' 2>&1); $(( $(date +%s) - START )) s in all$( [ "$TINY" = 1 ] && echo ' (--tiny, on the CPU)')."
  echo; echo "| step | exit | seconds |"; echo "|---|---:|---:|"; printf '%s\n' "${STEPS[@]}"
  for md in "$F"/speed/*.md "$F"/suite/*.md; do [ -f "$md" ] && { echo; sed 's/^# /## /' "$md"; }; done
  echo; echo "## CUDA tests"; echo; tail -n 15 "$F/cuda_tests.log" | sed 's/^/    /'
} > "$OUT/summary.md"
tar -czf "$OUT/gpu_check.tar.gz" -C "$OUT" files && rm -rf "$F"
echo "gpu_check: $(( $(date +%s) - START )) s; $OUT/summary.md and $OUT/gpu_check.tar.gz"
[ "$FAILED" = 0 ] || { echo "gpu_check: $FAILED step(s) failed (summary.md says which)" >&2; exit 1; }
