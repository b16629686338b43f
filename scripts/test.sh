#!/usr/bin/env bash
# The project's test command (README, .ci/run): fetch the real assets, check formatting and
# lints, then run every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-assets.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
