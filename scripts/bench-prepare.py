#!/usr/bin/env python3
"""Time `cloud-train data prepare` per GB of text, beside HF `tokenizers` doing the same
tokenization (JSON lines parsed, then `Tokenizer.encode_batch` by batches of 1000 documents,
what `datasets.map(tokenize, batched=True)` does) on the same input, same machine, one run.

The input is a JSONL corpus of about --mb megabytes built from the bundled sample corpora
(English paragraphs and Chinese lines, each document a few paragraphs with a counter so that
no two are equal).

    cargo build --release -p cloud-train
    .venv/bin/python scripts/bench-prepare.py --mb 256
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def corpus(path, mb):
    en = [p for p in open(os.path.join(ROOT, "configs/corpora/en/wellbeing.txt"), encoding="utf-8")
          .read().split("\n\n") if p.strip()]
    zh = [json.loads(l)["text"] for l in open(os.path.join(ROOT, "configs/corpora/zh/wellbeing.jsonl"),
                                                encoding="utf-8")]
    paras = en + zh
    target, size, i = mb << 20, 0, 0
    with open(path, "w", encoding="utf-8") as f:
        while size < target:
            doc = "\n\n".join(paras[(i * 7 + k * 13) % len(paras)] for k in range(4)) + f" ({i})"
            line = json.dumps({"text": doc}, ensure_ascii=False) + "\n"
            f.write(line)
            size += len(line.encode("utf-8"))
            i += 1
    return size, i


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=256)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/cloud-train"))
    args = ap.parse_args()
    tok_path = os.path.join(ROOT, "assets/llama3-tokenizer.json")
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "corpus.jsonl")
        size, docs = corpus(src, args.mb)
        gb = size / 1e9
        t = time.perf_counter()
        out = subprocess.run([args.bin, "data", "prepare", "--in", src, "--out", os.path.join(tmp, "out"),
                              "--tokenizer", tok_path, "--force"], check=True, capture_output=True, text=True)
        ours = time.perf_counter() - t
        manifest = json.load(open(os.path.join(tmp, "out", "manifest.json")))
        tokens = sum(s["tokens"] for s in manifest["splits"].values())

        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(tok_path)
        t = time.perf_counter()
        hf_tokens, batch = 0, []
        with open(src, encoding="utf-8") as f:
            for line in f:
                batch.append(json.loads(line)["text"])
                if len(batch) == 1000:
                    hf_tokens += sum(len(e.ids) + 1 for e in tok.encode_batch(batch))
                    batch = []
        if batch:
            hf_tokens += sum(len(e.ids) + 1 for e in tok.encode_batch(batch))
        hf = time.perf_counter() - t

    print(out.stdout.strip())
    print(f"\ninput: {size / 1e6:.0f} MB of JSONL, {docs} documents, {os.cpu_count()} cores")
    print("| tool | seconds | s/GB | MB/s | tokens |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| cloud-train data prepare (writes shards) | {ours:.1f} | {ours / gb:.0f} | {size / 1e6 / ours:.1f} | {tokens} |")
    print(f"| HF tokenizers encode_batch (tokenize only) | {hf:.1f} | {hf / gb:.0f} | {size / 1e6 / hf:.1f} | {hf_tokens} |")
    print(f"ratio (HF time / ours): {hf / ours:.2f}x")


if __name__ == "__main__":
    main()
