#!/usr/bin/env bash
# Issue 12's measurement on a lent GPU machine, in one command of under 8 minutes on an H200:
#
#   benchmarks/gpu_check.sh OUT [--tiny] [--wheels DIR]
#
# 1. set-up: pip-installs optuna, submitit, pytorch-fid, torch-fidelity and pythae offline
#    (pip install --no-index --find-links DIR) from --wheels DIR, $VAEBENCH_WHEELS, wheels/ or
#    shared/wheels/ if one exists, each package on its own, skipping what is absent;
# 2. python -m benchmarks.speed on cifar10 and celeba, synthetic data, --device cuda: fp32, then
#    --bf16, then --compile (OUT/speed, OUT/speed-bf16, OUT/speed-compile);
# 3. python -m benchmarks.suite_throughput: the cifar10 suite (4 rows, two-stage, 2 seeds) at
#    reduced epochs, one run vs the suite sequentially vs the suite as concurrent processes;
# 4. python -m benchmarks.fid_timing: 10k vs 10k images through vaebench's FID Inception, or
#    torchvision's Inception-v3 with random weights where its weights are absent, batches 200 and 500;
# and OUT/env.json (versions, GPU, git commit), OUT/nvidia-smi.txt, OUT/steps.tsv (each step's exit
# status and seconds), one log per step, OUT/summary.json and OUT/summary.md. Every step runs
# under `timeout`, so one that fails or hangs loses only itself. --tiny runs every step on the
# CPU at a tiny setting (the test, tests/test_gpu_check.py). Set VAEBENCH_COMMIT when the copy
# of the repository has no .git.
# Exit status: 0 done (also -h/--help), 2 refused input (the message names the argument, the
# value and what is allowed); a failed step is recorded in OUT/steps.tsv and the script goes on.
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
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
cd "$REPO" || exit 1
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
START=$(date +%s)
printf 'step\trc\tseconds\n' > "$OUT/steps.tsv"

step() {  # step NAME TIMEOUT_S COMMAND...: run under timeout, log to OUT/NAME.log, record rc and seconds
  local name=$1 limit=$2; shift 2
  local t0 t1 rc
  t0=$(date +%s.%N)
  echo "== $name (limit ${limit}s): $*" | tee -a "$OUT/gpu_check.log"
  timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  t1=$(date +%s.%N)
  printf '%s\t%s\t%.1f\n' "$name" "$rc" "$(echo "$t1 - $t0" | bc)" >> "$OUT/steps.tsv"
  echo "   rc $rc; $(tail -n 1 "$OUT/$name.log")" | tee -a "$OUT/gpu_check.log"
}

# ---- set-up: wheels, environment ------------------------------------------------------------
if [ -z "$WHEELS" ]; then
  for d in wheels shared/wheels; do [ -d "$d" ] && WHEELS=$d && break; done
fi
if [ -n "$WHEELS" ] && [ -d "$WHEELS" ] && [ "$TINY" = 0 ]; then
  for pkg in optuna submitit pytorch-fid torch-fidelity pythae; do
    mod=$(echo "$pkg" | tr - _); [ "$pkg" = pytorch-fid ] && mod=pytorch_fid
    if "$PY" -c "import $mod" 2>/dev/null; then echo "$pkg: already importable" >> "$OUT/setup.log"; continue; fi
    timeout 120 "$PY" -m pip install -q --no-index --find-links "$WHEELS" "$pkg" >> "$OUT/setup.log" 2>&1 \
      || timeout 60 "$PY" -m pip install -q --no-index --no-deps --find-links "$WHEELS" "$pkg" >> "$OUT/setup.log" 2>&1 \
      || echo "$pkg: not installed (absent from $WHEELS?)" >> "$OUT/setup.log"
  done
else
  echo "no wheels folder${WHEELS:+ $WHEELS}${TINY:+ (or --tiny)}: nothing installed" >> "$OUT/setup.log"
fi
(command -v nvidia-smi > /dev/null && nvidia-smi && nvidia-smi -q) > "$OUT/nvidia-smi.txt" 2>&1 || echo "no nvidia-smi" >> "$OUT/nvidia-smi.txt"
COMMIT=${VAEBENCH_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
DIRTY=$(git status --porcelain 2>/dev/null | grep -c . || true)
VAEBENCH_COMMIT=$COMMIT VAEBENCH_DIRTY=$DIRTY timeout 120 "$PY" - "$OUT/env.json" <<'PYEOF' > "$OUT/env.log" 2>&1
import json, os, platform, sys
from importlib.metadata import version, PackageNotFoundError
import torch
def v(p):
    try: return version(p)
    except PackageNotFoundError: return None
cuda = torch.cuda.is_available()
env = {"python": sys.version.split()[0], "platform": platform.platform(), "torch": torch.__version__,
       "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if cuda else None,
       "cuda_available": cuda, "gpu": torch.cuda.get_device_name(0) if cuda else None,
       "gpu_count": torch.cuda.device_count(),
       "gpu_memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None,
       "packages": {p: v(p) for p in ("torchvision", "numpy", "scipy", "optuna", "submitit", "pytorch-fid",
                                      "torch-fidelity", "pythae")},
       "git_commit": os.environ["VAEBENCH_COMMIT"], "git_dirty_files": int(os.environ.get("VAEBENCH_DIRTY") or 0)}
json.dump(env, open(sys.argv[1], "w"), indent=2)
print(json.dumps(env))
PYEOF

# ---- the measurements, most important first ----------------------------------------------------
if [ "$TINY" = 1 ]; then
  SPEED=(--dataset digits --device cpu --synthetic --epochs 1 --rounds 1 --n-train 200 --stage2-rounds 1
         --eval-images 2 --eval-batch-sizes 2 --threads 1 --skip projection)
  SPEED_FAST=(--dataset digits --device cpu --synthetic --epochs 1 --rounds 1 --n-train 200 --threads 1
              --skip pythae,stage2,eval,projection)
  SUITE=(--suite quick --seeds 1 --device cpu --n-train 200 --epochs 1 --stage2-epochs 1 --threads 1 --processes 2)
  FID=(--device cpu --n-images 4 --batch-sizes 2,4)
  T_SPEED=150; T_FAST=120; T_SUITE=150; T_FID=150
else
  # 20,000 images an epoch (200 steps), 3 timed rounds; the plain run also times stage 2,
  # evaluation and the paper-protocol projection.
  SPEED=(--dataset cifar10 celeba --device cuda --synthetic --n-train 20000 --rounds 3 --eval-images 2000
         --eval-batch-sizes 50,200,500)
  SPEED_FAST=(--dataset cifar10 celeba --device cuda --synthetic --n-train 20000 --rounds 3 --skip eval)
  SUITE=(--suite cifar10 --seeds 2 --device cuda --n-train 20000 --epochs 2 --stage2-epochs 4)
  FID=(--device cuda --n-images 10000 --batch-sizes 200,500)
  T_SPEED=130; T_FAST=85; T_SUITE=110; T_FID=60
fi
step speed         "$T_SPEED" "$PY" -m benchmarks.speed "${SPEED[@]}" --out "$OUT/speed"
step suite_throughput "$T_SUITE" "$PY" -m benchmarks.suite_throughput "${SUITE[@]}" --out "$OUT/suite"
step fid_timing    "$T_FID" "$PY" -m benchmarks.fid_timing "${FID[@]}" --out "$OUT/fid"
step speed_bf16    "$T_FAST" "$PY" -m benchmarks.speed "${SPEED_FAST[@]}" --bf16 --out "$OUT/speed-bf16"
step speed_compile "$T_FAST" "$PY" -m benchmarks.speed "${SPEED_FAST[@]}" --compile --out "$OUT/speed-compile"

# ---- summary -------------------------------------------------------------------------------------
timeout 60 "$PY" - "$OUT" "$(( $(date +%s) - START ))" <<'PYEOF' >> "$OUT/gpu_check.log" 2>&1
import csv, json, sys
from pathlib import Path
out, seconds = Path(sys.argv[1]), int(sys.argv[2])
def load(p):
    try: return json.loads(p.read_text())
    except (OSError, ValueError): return None
s = {"seconds": seconds, "env": load(out / "env.json"),
     "steps": {r["step"]: {"rc": int(r["rc"]), "seconds": float(r["seconds"])}
               for r in csv.DictReader(open(out / "steps.tsv"), delimiter="\t")}, "speed": {}}
for folder in ("speed", "speed-bf16", "speed-compile"):
    for p in sorted((out / folder).glob("*.json")):
        r = load(p) or {}
        s["speed"][f"{folder}/{p.stem}"] = {
            "vaebench_images_per_second": r.get("trainers", {}).get("vaebench", {}).get("images_per_second"),
            "ratios": {k: v for k, v in (r.get("ratios") or {}).items() if not k.endswith("_best")},
            "fraction_of_peak": (r.get("flops") or {}).get("fraction_of_peak"),
            "peak_memory": r.get("trainers", {}).get("vaebench", {}).get("peak_memory"),
            "projection_hours": (r.get("projection") or {}).get("total_hours")}
st = load(out / "suite" / "suite-throughput.json") or {}
s["suite_throughput"] = {k: st.get(k) for k in ("suite", "runs", "device", "sequential_over_single",
                                                "concurrent_over_single", "concurrent_speedup", "target")}
fid = load(out / "fid" / "fid-timing.json") or {}
s["fid"] = {"device": fid.get("device"), "n_images": fid.get("n_images"), "extractor": fid.get("extractor") or "-",
            "total_seconds_by_batch": {b: v["total_seconds"] for b, v in (fid.get("batches") or {}).items()}}
(out / "summary.json").write_text(json.dumps(s, indent=2) + "\n")
env = s["env"] or {}
md = [f"# GPU check: {env.get('gpu') or 'no GPU (CPU)'}", "",
      f"commit {env.get('git_commit')}, torch {env.get('torch')}, CUDA {env.get('cuda')}, "
      f"cuDNN {env.get('cudnn')}; {seconds} s in all.", "", "| step | exit | seconds |", "|---|---:|---:|"]
md += [f"| {k} | {v['rc']} | {v['seconds']:.0f} |" for k, v in s["steps"].items()]
md += ["", "| speed run | vaebench images/s | over tutorial | over pythae | of peak | protocol, h |",
       "|---|---:|---:|---:|---:|---:|"]
f = lambda v, spec: "-" if v is None else format(v, spec)
for k, v in s["speed"].items():
    r = v["ratios"]
    md.append(f"| {k} | {f(v['vaebench_images_per_second'], ',.0f')} | {f(r.get('vaebench_over_tutorial'), '.2f')}x | "
              f"{f(r.get('vaebench_over_pythae'), '.2f')}x | {f(v['fraction_of_peak'], '.3f')} | "
              f"{f(v['projection_hours'], '.2f')} |")
t = s["suite_throughput"]
md += ["", f"Suite throughput ({t.get('suite')}, {t.get('runs')} runs): sequential {f(t.get('sequential_over_single'), '.2f')}x, "
       f"concurrent {f(t.get('concurrent_over_single'), '.2f')}x one run's wall time.", "",
       f"FID ({s['fid']['n_images']} + {s['fid']['n_images']} images, {s['fid']['extractor'].split(':')[0]}), seconds by batch: "
       + (", ".join(f"{b}: {x:.1f}" for b, x in s["fid"]["total_seconds_by_batch"].items()) or "-")]
(out / "summary.md").write_text("\n".join(md) + "\n")
print("\n".join(md))
PYEOF
echo "gpu_check: $(( $(date +%s) - START )) s; results in $OUT" | tee -a "$OUT/gpu_check.log"
