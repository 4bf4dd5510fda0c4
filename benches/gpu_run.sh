#!/usr/bin/env bash
# On a lent GPU machine, over a copy of the checkout with .gpu/ from benches/gpu_kit.sh:
# installs the Vulkan loader, unpacks gfr, makes a 60,000-image IDX set by tiling the built-in
# 6,000-digit MNIST sample ten times (an epoch's time depends on the image count, not on the
# digits; accuracies on it are not Fashion-MNIST's), and runs benches/gpu_check.sh on it.
# Everything it prints also goes to $OUT/gpu_check.log (the device tool brings $OUT back).
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
log=${OUT:-/tmp}/gpu_check.log
{
  echo "gfr $(cat .gpu/commit 2>/dev/null | tr '\n' ' ')"
  for f in .gpu/*.deb; do dpkg -x "$f" /; done
  ldconfig
  icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f "$icd" ] && export VK_DRIVER_FILES=$icd
  xz -dc .gpu/gfr.xz > /tmp/gfr && chmod +x /tmp/gfr
  # a wgpu adapter first: without one, the loader's own account of why, and stop
  if ! /tmp/gfr bench --device wgpu --cells 1 --config-path configs/test.json > /tmp/adapter.log 2>&1; then
    cat /tmp/adapter.log
    VK_LOADER_DEBUG=error,warn,driver /tmp/gfr bench --device wgpu --cells 1 --config-path configs/test.json 2>&1 | head -40
    exit 1
  fi
  grep -E "seconds per cell|median" /tmp/adapter.log
  mnist=$(mktemp -d)
  python3 - "$root/data/mnist-sample" "$mnist" <<'PY'
import gzip, os, sys
src, dst = sys.argv[1:]
for name, copies in [("train-images-idx3-ubyte", 10), ("train-labels-idx1-ubyte", 10),
                     ("t10k-images-idx3-ubyte", 10), ("t10k-labels-idx1-ubyte", 10)]:
    data = gzip.open(os.path.join(src, name + ".gz")).read()
    header = 16 if "images" in name else 8
    n = int.from_bytes(data[4:8], "big")
    out = data[:4] + (n * copies).to_bytes(4, "big") + data[8:header] + data[header:] * copies
    open(os.path.join(dst, name), "wb").write(out)
    print(f"{name}: {n} -> {n * copies}")
PY
  bash benches/gpu_check.sh "$mnist" /tmp/gfr
} 2>&1 | tee "$log"
