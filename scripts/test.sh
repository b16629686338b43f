#!/usr/bin/env bash
# The project's test command (README, .ci/run): fetch the real assets, check formatting and
# lints, then run every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/fetch-assets.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# Tests that hold a known gap to a looser bound than their issue's target print a WARNING line
# (captured by cargo for passing tests); list them here so that every run shows them.
echo "KNOWN GAP (issue 3): on Q4_K_M files edge-runtime matches llama.cpp's plain Q4_K path exactly but not its AVX2-repacked one (~0.27 apart; target 0.05); quantize/tests/convert.rs holds that comparison to 0.5."
