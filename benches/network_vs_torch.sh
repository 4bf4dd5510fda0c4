#!/bin/bash
# Seconds of training per epoch: `gfr network` against torch.nn.RNN and torch.nn.LSTM
# (benches/torch_rnn.py), H = 128, batch 64, alternating on one machine in one run, so that
# the numbers compare. Run by hand, never by CI (it needs torch):
#
#   benches/network_vs_torch.sh MNIST_DIR [EPOCHS=2] [REPEATS=3]
#
# MNIST_DIR: IDX files (e.g. data/mnist-sample, the built-in sample's files, or Debian's
# /usr/share/datasets/fashion-mnist). GFR=path/to/gfr (default target/release/gfr) and
# PY=python-with-torch (default python3) choose the programs. Prints one line per run: the
# seconds of each epoch's training (evaluation left out) and the last test accuracy.
set -euo pipefail
dir=${1:?usage: $0 MNIST_DIR [EPOCHS] [REPEATS]}
epochs=${2:-2}
repeats=${3:-3}
gfr=${GFR:-${CARGO_TARGET_DIR:-target}/release/gfr}
py=${PY:-python3}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for r in $(seq "$repeats"); do
  "$gfr" network --mnist-dir "$dir" --offline --epochs "$epochs" --quiet --overwrite \
    --save-dir "$tmp/gfr" > /dev/null
  "$py" - "$tmp/gfr/gfr_l_128_False_False.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print("gfr network   s/epoch", " ".join(f"{e['seconds']:.2f}" for e in d["history"]),
      f" test {d['final_test_accuracy_step1']:.3f}")
PY
  for model in rnn lstm; do
    "$py" "$here/torch_rnn.py" --mnist-dir "$dir" --model "$model" --epochs "$epochs" \
      --json "$tmp/$model.json" > /dev/null
    "$py" - "$tmp/$model.json" "$model" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"torch {sys.argv[2]:<7} s/epoch", " ".join(f"{e['train_seconds']:.2f}" for e in d["epochs"]),
      f" test {d['epochs'][-1]['test_accuracy']:.3f}")
PY
  done
done
