#!/usr/bin/env bash
# The GPU check of multi-GPU training (docs/distributed.md), for a machine with an NVIDIA GPU:
#  1. one-GPU training speed of a ~1B Llama (configs/models/llama-1b.json, Llama-3.2-1B's
#     shape) in BF16 with the memory savers of configs/cpt-llama3-8b.toml: tokens/s and MFU
#     (`bench-step`, the optimizer `cpt` runs);
#  2. the NCCL engine end to end on this GPU: a short tiny CPT run with collective = "nccl" and
#     ZeRO-1 as rank 0 of 1 (torchrun's variables), whose final loss must equal the same run
#     on the CPU backend without NCCL to 1e-3 (a different device, the same arithmetic).
#
#   scripts/gpu-check.sh [PEAK_TFLOPS]     (default 989: H100/H200 dense BF16)
#
# Needs CUDA's driver, NVRTC (libnvrtc) and NCCL (libnccl.so.2) at run time, and a build with
# `cuda,nccl`, which needs no network beyond the crates and no CUDA toolkit (vendor/README.md).
# The 8B CPT itself needs 32 GPUs at ZeRO-1 (`cloud-train plan`; docs/distributed.md):
#   sbatch configs/slurm/cpt-8b-4node-8gpu.sbatch
set -euo pipefail
cd "$(dirname "$0")/.."
peak=${1:-989}
bin=target/release/cloud-train
if [ ! -x "$bin" ] || ! "$bin" bench-step --help >/dev/null 2>&1; then
    cargo build --release -p cloud-train --features cuda,nccl
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

echo "== 1. one-GPU training step, ~1B params, BF16 =="
"$bin" bench-step --config configs/models/llama-1b.json --backend cuda --bf16 \
    --seq-len 2048 --batch 4 --steps 5 --checkpoint-layers --attention-block 512 \
    --ce-chunk 2048 --peak-tflops "$peak"

echo "== 2. NCCL engine (rank 0 of 1, ZeRO-1) vs the CPU backend =="
scripts/fetch-assets.sh >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for lang in en zh; do
    "$bin" data prepare --in configs/corpora/$lang --out "$tmp/$lang" \
        --tokenizer assets/llama3-tokenizer.json --val-fraction 0.25 >/dev/null
done
run() { # OUT BACKEND COLLECTIVE
    "$bin" cpt --config configs/cpt-tiny.toml \
        --set "data.corpus=[{name=\"en\", path=\"$tmp/en\", role=\"base\"}, {name=\"zh\", path=\"$tmp/zh\", role=\"additional\"}]" \
        --set "output.dir=\"$tmp/$1\"" --set train.steps=6 --set train.backend=$2 \
        --set train.collective=$3 --set train.zero_stage=1 | tail -1
}
gpu=$(RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=29511 run gpu cuda nccl)
cpu=$(run cpu flex single)
echo "cuda+nccl: $gpu"
echo "flex:      $cpu"
loss() { sed -E 's/.*, loss ([0-9.]+),.*/\1/' <<<"$1"; }
python3 - "$(loss "$gpu")" "$(loss "$cpu")" <<'PY'
import sys
g, c = map(float, sys.argv[1:])
print(f"final loss cuda+nccl {g} vs flex {c}: |diff| {abs(g - c):.2e}")
sys.exit(0 if abs(g - c) <= 1e-3 else 1)
PY
