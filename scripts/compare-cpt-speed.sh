#!/usr/bin/env bash
# Training speed of two cloud-train binaries side by side on configs/cpt-tiny.toml (24 steps,
# 8M parameters, 2 CPU cores), alternating runs; prints each run's tokens/s and the medians.
#   scripts/compare-cpt-speed.sh OLD_BIN NEW_BIN [ROUNDS]
# e.g. to check a change against main: build main in a worktree with the same target dir
# (git worktree add /tmp/base main && (cd /tmp/base && CARGO_TARGET_DIR=$PWD/target cargo
# build --release -p cloud-train) ...), then pass both release binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1 new=$2 rounds=${3:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for c in en zh; do
    "$new" data prepare --in "configs/corpora/$c" --out "$work/data/$c" \
        --tokenizer assets/llama3-tokenizer.json --val-fraction 0.25 >/dev/null
done
speed() {
    "$1" cpt --config configs/cpt-tiny.toml --fresh \
        --set "data.corpus=[{name=\"en\", path=\"$work/data/en\", role=\"base\"}, {name=\"zh\", path=\"$work/data/zh\", role=\"additional\"}]" \
        --set "output.dir=\"$work/run-$2\"" 2>/dev/null |
        sed -n 's/.* \([0-9.]*\) tokens\/s.*/\1/p'
}
declare -a a b
for i in $(seq "$rounds"); do
    a+=("$(speed "$old" "old$i")")
    b+=("$(speed "$new" "new$i")")
    echo "round $i: old ${a[-1]} tokens/s, new ${b[-1]} tokens/s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
mo=$(median "${a[@]}") mn=$(median "${b[@]}")
echo "median: old $mo tokens/s, new $mn tokens/s, new/old $(awk -v n="$mn" -v o="$mo" 'BEGIN {printf "%.3f", n/o}')"
