#!/usr/bin/env python3
"""Quality and speed of `quantize convert` beside llama.cpp, in one run.

For each type: our `quantize convert` (HF checkpoint -> GGUF) timed against llama.cpp's
quantizer (llama_model_quantize from the F32 GGUF, the same thread count); then the perplexity of
our file on the same text with our runtime (`edge-run perplexity`) and with llama.cpp
(llama-cpp-python, computed as llama-perplexity does: chunks of -c tokens, second half scored).

    .venv/bin/python scripts/bench-quantize-vs-llama.py [--hf target/test-models/smollm2-hf]
        [--text tests/fixtures/runtime/ppl_text.txt] [-c 256] [-t 2]

The default HF checkpoint is the shipped SmolLM2 GGUF turned into HF by `quantize to-hf`.
"""
import argparse
import math
import os
import re
import subprocess
import time

import llama_cpp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TYPES = {"f16": llama_cpp.LLAMA_FTYPE_MOSTLY_F16, "q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0,
         "q4_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0, "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}


def llama_ppl(model, text, n_ctx, threads):
    llm = llama_cpp.Llama(model, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=threads,
                          logits_all=True, verbose=False)
    tokens = llm.tokenize(text.encode(), add_bos=False, special=False)
    first, nll, count = n_ctx // 2, 0.0, 0
    for c in range(len(tokens) // n_ctx):
        chunk = tokens[c * n_ctx:(c + 1) * n_ctx]
        llm.reset()
        llm.eval(chunk)
        for j in range(first, n_ctx - 1):
            logits = np.asarray(llm.scores[j], dtype=np.float64)
            m = logits.max()
            nll += m + math.log(np.exp(logits - m).sum()) - logits[chunk[j + 1]]
            count += 1
    return math.exp(nll / count)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", default=os.path.join(ROOT, "target/test-models/smollm2-hf"))
    ap.add_argument("--text", default=os.path.join(ROOT, "tests/fixtures/runtime/ppl_text.txt"))
    ap.add_argument("-c", "--ctx", type=int, default=256)
    ap.add_argument("-t", "--threads", type=int, default=2)
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-p", "quantize", "-p", "edge-runtime"], cwd=ROOT,
                   check=True)
    q = os.path.join(ROOT, "target/release/quantize")
    run = os.path.join(ROOT, "target/release/edge-run")
    work = os.path.join(ROOT, "target/bench-quantize")
    os.makedirs(work, exist_ok=True)
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    if not os.path.exists(os.path.join(args.hf, "config.json")):
        subprocess.run([q, "to-hf", "--in", os.path.join(ROOT, "assets/SmolLM2-135M-Instruct.Q4_1.gguf"),
                        "--out", args.hf, "--quiet"], check=True)
    f32 = os.path.join(work, "f32.gguf")
    subprocess.run([q, "convert", "--in", args.hf, "--out", f32, "--type", "f32", "--quiet"], check=True,
                   env=env)
    text = open(args.text, encoding="utf-8").read()
    print(f"{os.path.relpath(args.hf, ROOT)}, {len(text)} characters of text, -c {args.ctx}, "
          f"{args.threads} threads\n")
    print("| type | size MiB | convert (ours) s | llama-quantize s | ppl edge-runtime | ppl llama.cpp |")
    print("| --- | --- | --- | --- | --- | --- |")
    for ty, ftype in TYPES.items():
        ours = os.path.join(work, f"ours.{ty}.gguf")
        t0 = time.perf_counter()
        subprocess.run([q, "convert", "--in", args.hf, "--out", ours, "--type", ty, "--quiet"], check=True,
                       env=env)
        t_ours = time.perf_counter() - t0
        ref = os.path.join(work, f"llama.{ty}.gguf")
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ftype
        params.nthread = args.threads
        t0 = time.perf_counter()
        assert llama_cpp.llama_model_quantize(f32.encode(), ref.encode(), params) == 0
        t_ref = time.perf_counter() - t0
        out = subprocess.run([run, "perplexity", "-m", ours, "-f", args.text, "-c", str(args.ctx),
                              "-t", str(args.threads)], check=True, capture_output=True, text=True).stdout
        m = re.findall(r"(?:PPL|perplexity)[^0-9]*([0-9]+\.[0-9]+)", out, flags=re.I)
        ppl_ours = float(m[-1]) if m else float("nan")
        ppl_ref = llama_ppl(ours, text, args.ctx, args.threads)
        size = os.path.getsize(ours) / (1 << 20)
        print(f"| {ty} | {size:.1f} | {t_ours:.2f} | {t_ref:.2f} | {ppl_ours:.4f} | {ppl_ref:.4f} |", flush=True)


if __name__ == "__main__":
    main()
