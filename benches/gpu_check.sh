#!/usr/bin/env bash
# The GPU measurements of the README and docs/benchmarks.md (issues #13, #27), in one call on a
# GPU machine, ending within 600 s (the device tool's limit for one command):
#   benches/gpu_check.sh MNIST_DIR [GFR] [GFR_BEFORE]
# On a lent machine, run it through benches/gpu_run.sh (packed by benches/gpu_kit.sh).
# MNIST_DIR: a full-size IDX set (60,000 training images); GFR: the gfr binary (default
# target/release/gfr); GFR_BEFORE: an older binary to time in the same call.
# GPU_CHECK_CELLS (default 10000): the cells of the population-scale fit (wgpu's default
# --batch-cells at a time).
# Needs a Vulkan driver (wgpu) and, for the peer row, python3 with torch (CUDA).
set -u
mnist=${1:?usage: benches/gpu_check.sh MNIST_DIR [GFR] [GFR_BEFORE]}
root=$(cd "$(dirname "$0")/.." && pwd)
gfr=${2:-$root/target/release/gfr}
before=${3:-}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
step() { echo "== $* ($(date +%T))"; }
# the whole script ends within GPU_CHECK_SECONDS (default 570) of its start: the fit, which
# matters most and varies most, gets what the steps before it left
start=$(date +%s)
left() { local l=$(( ${GPU_CHECK_SECONDS:-570} - ($(date +%s) - start) - ${1:-0} )); echo $(( l > 1 ? l : 1 )); }
nvidia-smi -L 2>/dev/null
# issue #27: a 60k epoch on wgpu against torch.nn.RNN on CUDA, same machine, H = 128, batch 64
step torch.nn.RNN, CUDA, 3 epochs
PYTHONUNBUFFERED=1 timeout 75 python3 "$root/benches/torch_rnn.py" --mnist-dir "$mnist" --device cuda --epochs 3 2>&1 | tail -3
binaries=("$gfr")
[ -n "$before" ] && binaries+=("$before")
for g in "${binaries[@]}"; do
  step "$g network --device wgpu, 3 epochs"
  timeout 75 "$g" network --device wgpu --mnist-dir "$mnist" --offline --epochs 3 --quiet \
    --overwrite --save-dir "$scratch/net" 2>&1 | grep -E "^epoch|rror|adapter"
done
step "$gfr bench --network --device wgpu (6,000-digit sample): launches and host time per batch"
timeout 40 "$gfr" bench --network --device wgpu --epochs 1 2>&1 | grep -v "^  "
# issue #27: 10,000 cells on one GPU, host memory under 8 GB, device memory under 20 GB; each
# batch prints its running seconds per cell, so a cut-off run still says its speed
# (simulating 10,000 cells on 16 cores takes about a minute, not counted in its seconds per cell)
# (nvidia-smi's reading of the device memory, every 2 s, checks gfr's own)
cells=${GPU_CHECK_CELLS:-10000}
fit() {
  step "$gfr bench --device wgpu --cells $cells $* (default config)"
  local smi=$scratch/smi.csv
  nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader,nounits -l 2 > "$smi" 2>/dev/null &
  local smi_pid=$!
  timeout "$(left 35)" "$gfr" bench --device wgpu --cells "$cells" "$@" 2>&1 | grep -v "^  "
  kill "$smi_pid" 2>/dev/null
  awk -F', *' '{m = $1 > m ? $1 : m; if ($2 > 0) {u += $2; n++}} END {printf "nvidia-smi: device memory used at most %d MiB; GPU busy %.0f %% of the samples it was used in (%d)\n", m, n ? u / n : 0, n}' "$smi"
}
# at wgpu's default --batch-cells, then (what a larger default would give) all at once
fit
if [ "$(left)" -gt 150 ]; then fit --batch-cells "$cells"; else step "no time left for one batch of $cells"; fi
step "kernel profile of the network (syncs after every kernel): 10 batches"
[ "$(left)" -gt 10 ] || { step "no time left for the profile"; exit 0; }
CUBECL_DEBUG_LOG="$scratch/profile.log" CUBECL_DEBUG_OPTION=profile timeout "$(left)" "$gfr" network \
  --device wgpu --mnist-dir "$mnist" --offline --epochs 1 --train-limit 640 --test-limit 100 \
  --quiet --overwrite --save-dir "$scratch/profile" > /dev/null 2>&1 || echo "profile run failed"
grep "^| " "$scratch/profile.log" | awk -F'|' '{t=$2; gsub(/ /,"",t); v=t+0; if (t ~ /ms$/) v*=1000; else if (t ~ /ns$/) v/=1000;
  k=$3; sub(/_[0-9a-f]+ *$/,"",k); s[k]+=v; c[k]++} END {for (k in s) printf "%10.0f us %6d  %s\n", s[k], c[k], k}' | sort -rn | head -12
step done
