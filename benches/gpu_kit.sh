#!/usr/bin/env bash
# Packs what a lent GPU machine needs to run benches/gpu_run.sh into .gpu/ (ignored by git):
# the gfr binary, stripped and xz-compressed (the working tree that travels to the machine is
# limited to 64 MiB; the plain binary is over it), and the Vulkan loader (the machine has
# NVIDIA's driver but no loader). Run it here, in the checkout, then with the device tool:
#   run  carry: [".gpu"]  timeout_s: 600  command: bash benches/gpu_run.sh
# The machine has no Rust toolchain and reaches no network: everything the run needs travels.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
target=${CARGO_TARGET_DIR:-$root/target}
cargo build --release --bin gfr
mkdir -p .gpu .git/info
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
strip -o .gpu/gfr "$target/release/gfr"
xz -T0 -f .gpu/gfr
lists=$(mktemp -d)
trap 'rm -rf "$lists"' EXIT
mkdir -p "$lists/partial"
o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=$lists"
apt-get $o update -qq
# the Vulkan loader, and the GL dispatch libraries NVIDIA's Vulkan driver (libGLX_nvidia) needs
(cd .gpu && rm -f ./*.deb && apt-get $o download -qq libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
git rev-parse --short HEAD > .gpu/commit
git diff --quiet HEAD || echo "(with uncommitted changes)" >> .gpu/commit
ls -l .gpu
echo "now: run  carry: [\".gpu\"]  timeout_s: 600  command: bash benches/gpu_run.sh"
