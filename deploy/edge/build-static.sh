#!/usr/bin/env bash
# Builds a static, size-optimised x86_64 shiki-edge and prints its size.
#
#   deploy/edge/build-static.sh                 # x86_64, static (glibc static linking)
#   TARGET=aarch64-unknown-linux-gnu deploy/edge/build-static.sh
#
# For aarch64 gateways: `rustup target add aarch64-unknown-linux-gnu` and Debian's
# `gcc-aarch64-linux-gnu`; this script sets the linker. The result runs under qemu-user
# (Debian `qemu-user-binfmt`) for a smoke test: `qemu-aarch64 ./shiki-edge --help`.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${TARGET:-x86_64-unknown-linux-gnu}
if [ "$target" = aarch64-unknown-linux-gnu ]; then
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER:-aarch64-linux-gnu-gcc}
fi
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --locked --profile edge-release -p shiki-edge --target "$target"
bin=target/$target/edge-release/shiki-edge
size=$(stat -c %s "$bin")
echo "$bin: $size bytes ($(( size / 1024 )) KiB)"
file "$bin" 2>/dev/null || true
