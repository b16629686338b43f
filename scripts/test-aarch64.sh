#!/usr/bin/env bash
# The edge-runtime's NEON kernels on aarch64, from an x86_64 machine: cross-compiles the
# edge-runtime library tests for aarch64-unknown-linux-gnu and runs them under qemu-aarch64
# (user mode), where `simd_kernels_equal_scalar_bit_for_bit` checks every NEON kernel against
# its scalar twin bit for bit. On an aarch64 machine the plain `cargo test` runs them natively.
#
# Needs (installed here when missing and running as root): Debian's qemu-user,
# gcc-aarch64-linux-gnu and libc6-dev-arm64-cross, and rustup's aarch64-unknown-linux-gnu std.
# When any of them cannot be had, this says so loudly and exits 0, except under CI (CI set),
# where it fails unless tests/allowed-skips.txt lists `scripts/test-aarch64.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
target=aarch64-unknown-linux-gnu
skip() {
    echo "################################################################################" >&2
    echo "## SKIPPED: NEON kernels not tested: $*" >&2
    echo "################################################################################" >&2
    case "${CI:-}" in
    "" | 0 | false | FALSE | False) exit 0 ;;
    esac
    if grep -v '^#' tests/allowed-skips.txt | grep -qw "scripts/test-aarch64.sh"; then
        exit 0
    fi
    echo "test-aarch64: CI requires this step; list scripts/test-aarch64.sh in tests/allowed-skips.txt to allow the skip" >&2
    exit 1
}
if [ "$(uname -m)" = aarch64 ]; then
    exec cargo test --locked -p edge-runtime --lib
fi
pkgs=(qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
have() { command -v qemu-aarch64 >/dev/null && command -v aarch64-linux-gnu-gcc >/dev/null; }
if ! have; then
    [ "$(id -u)" = 0 ] || skip "need ${pkgs[*]} (sudo apt-get install ${pkgs[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${pkgs[@]}" >/dev/null ||
        { apt-get update -q >/dev/null && apt-get install -y -q "${pkgs[@]}" >/dev/null; } ||
        skip "apt-get install ${pkgs[*]} failed"
    have || skip "${pkgs[*]} installed, but qemu-aarch64 or aarch64-linux-gnu-gcc not found"
fi
if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target" >/dev/null 2>&1 || skip "rustup target add $target failed"
fi
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"
cargo clippy --locked --target "$target" -p edge-runtime --all-targets -- -D warnings
# Release: the scalar twins run ~50x slower under emulation without optimization.
out=$(cargo test --locked --release --target "$target" -p edge-runtime --lib -- --nocapture 2>&1) ||
    { echo "$out" >&2; echo "test-aarch64: FAILED" >&2; exit 1; }
echo "$out" | grep -E "kernels against the scalar twins|^test result" >&2
echo "$out" | grep -q "neon kernels against the scalar twins" ||
    { echo "test-aarch64: the NEON kernels did not run" >&2; exit 1; }
echo "test-aarch64: NEON kernels equal their scalar twins under qemu-aarch64" >&2
