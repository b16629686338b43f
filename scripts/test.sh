#!/usr/bin/env bash
# The project's test command (README, .ci/run): fetch the real assets, install OpenMPI for the
# multi-rank tests, check formatting and lints (with the MPI and NCCL features, so both engines
# keep compiling), then run every test of the workspace, the multi-rank ones included, and the
# edge-runtime's NEON kernel tests under qemu-aarch64.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-assets.sh
scripts/install-mpi.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked --features cloud-train/mpi,cloud-train/nccl -- -D warnings
cargo test --workspace --locked --features cloud-train/mpi
scripts/test-aarch64.sh
