#!/usr/bin/env bash
# Capture a bilingual edge-chat exchange as text (the tmux pane), for the README:
#   scripts/edge-chat-demo.sh [MODEL.gguf] > docs/edge-chat-demo.txt
# Needs tmux and a release build (cargo build --release -p edge-chat).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
model=${1:-$root/assets/SmolLM2-135M-Instruct.Q4_1.gguf}
bin=$root/target/release/edge-chat
sock=edge-chat-demo-$$
data=$(mktemp -d)
trap 'tmux -L "$sock" kill-server 2>/dev/null || true; rm -rf "$data"' EXIT
tmux -L "$sock" new-session -d -s d -x 100 -y 36 "EDGE_CHAT_DATA_DIR=$data $bin --model $model --persona listener --seed 42 -t 2"
wait_ready() {
  for _ in $(seq 1 600); do
    last=$(tmux -L "$sock" capture-pane -p -t d | grep -v '^\s*$' | tail -1 || true)
    if [[ $last == *ready* && $last != *"- t/s"* ]] || [[ ${1:-} == start && $last == *ready* ]]; then return 0; fi
    sleep 0.2
  done
  echo "timed out" >&2; exit 1
}
wait_ready start
tmux -L "$sock" send-keys -t d -l "/set max_tokens 72"
tmux -L "$sock" send-keys -t d Enter
tmux -L "$sock" send-keys -t d -l "I feel lonely since I moved to a new city."
tmux -L "$sock" send-keys -t d Enter
wait_ready
tmux -L "$sock" send-keys -t d -l "我最近工作压力很大，晚上睡不好。"
tmux -L "$sock" send-keys -t d Enter
sleep 1
wait_ready
tmux -L "$sock" capture-pane -p -t d
