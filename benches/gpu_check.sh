#!/usr/bin/env bash
# The GPU measurements of the README (issue #13), in one call on a GPU machine:
#   benches/gpu_check.sh MNIST_DIR [GFR] [GFR_BEFORE]
# MNIST_DIR: a full-size IDX set (e.g. Debian's dataset-fashion-mnist folder); GFR: the gfr
# binary (default target/release/gfr); GFR_BEFORE: an older binary to time in the same call.
# Needs a Vulkan driver (wgpu) and, for the peer rows, python3 with torch (CUDA).
set -u
mnist=${1:?usage: benches/gpu_check.sh MNIST_DIR [GFR] [GFR_BEFORE]}
gfr=${2:-target/release/gfr}
before=${3:-}
step() { echo "== $* ($(date +%T))"; }
nvidia-smi -L 2>/dev/null
step torch.nn.RNN, CUDA, 3 epochs
PYTHONUNBUFFERED=1 timeout 120 python3 "$(dirname "$0")/torch_rnn.py" --mnist-dir "$mnist" --device cuda --epochs 3 2>&1 | tail -3
for g in "$gfr" $before; do
  step "$g network --device wgpu, 3 epochs"
  timeout 120 "$g" network --device wgpu --mnist-dir "$mnist" --offline --epochs 3 --quiet \
    --save-dir "$(mktemp -d)" 2>&1 | grep -E "^epoch|rror"
done
step "$gfr bench --network --device wgpu (6,000-digit sample)"
timeout 60 "$gfr" bench --network --device wgpu --epochs 3 2>&1 | tail -3
for config in configs/default.json configs/thorough.json; do
  step "$gfr bench --device wgpu --cells 1000 --batch-cells 1000 --config-path $config"
  timeout 300 "$gfr" bench --device wgpu --cells 1000 --batch-cells 1000 --config-path "$config" 2>&1 | tail -5
done
step "kernel profile (syncs after every kernel): 10 batches"
log=$(mktemp)
CUBECL_DEBUG_LOG=$log CUBECL_DEBUG_OPTION=profile timeout 60 "$gfr" network --device wgpu --epochs 1 \
  --train-limit 640 --test-limit 100 --quiet --save-dir "$(mktemp -d)" > /dev/null 2>&1
grep "^| " "$log" | awk -F'|' '{t=$2; gsub(/ /,"",t); v=t+0; if (t ~ /ms$/) v*=1000; else if (t ~ /ns$/) v/=1000;
  k=$3; sub(/_[0-9a-f]+ *$/,"",k); s[k]+=v; c[k]++} END {for (k in s) printf "%10.0f us %6d  %s\n", s[k], c[k], k}' | sort -rn | head -12
step done
