#!/usr/bin/env python3
"""Side-by-side decode/prefill speed of edge-runtime and llama.cpp on the same GGUF file.

Runs `edge-run bench` and the same workload through llama.cpp (llama-cpp-python: pp = one batch of
N random tokens from an empty cache, tg = N tokens evaluated one at a time), same threads, in one
run, and prints the ratio. Needs llama-cpp-python in .venv (see tests/fixtures/make_quant_fixtures.py).

    .venv/bin/python scripts/bench-vs-llama-cpp.py [--model F.gguf] [-t 2] [-p 512] [-n 128] [-r 3]
"""
import argparse
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def llama_cpp_bench(model, threads, n_prompt, n_gen, reps):
    from llama_cpp import Llama

    llm = Llama(model, n_ctx=n_prompt + n_gen + 16, n_threads=threads, n_threads_batch=threads,
                n_batch=512, n_ubatch=512, verbose=False)
    rng = random.Random(1)
    vocab = llm.n_vocab()
    llm.eval([rng.randrange(vocab)])  # warm-up
    pp, tg = [], []
    for _ in range(reps):
        toks = [rng.randrange(vocab) for _ in range(n_prompt)]
        llm.reset()
        t = time.perf_counter()
        llm.eval(toks)
        pp.append(n_prompt / (time.perf_counter() - t))
    for _ in range(reps):
        llm.reset()
        t = time.perf_counter()
        for _ in range(n_gen):
            llm.eval([rng.randrange(vocab)])
        tg.append(n_gen / (time.perf_counter() - t))
    return statistics.mean(pp), statistics.mean(tg)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "assets", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("-r", "--reps", type=int, default=3)
    a = ap.parse_args()
    exe = os.path.join(ROOT, "target", "release", "edge-run")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "edge-runtime", "--bin", "edge-run"], cwd=ROOT, check=True)
    cmd = ["/usr/bin/time", "-f", "maxrss_kb=%M", exe, "bench", "-m", a.model, "-t", str(a.threads),
           "-p", str(a.n_prompt), "-n", str(a.n_gen), "-r", str(a.reps)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    print(r.stdout)
    ours = {m.group(1): float(m.group(2)) for m in re.finditer(r"\| (pp\d+|tg\d+) \| ([\d.]+) ±", r.stdout)}
    our_rss = int(re.search(r"maxrss_kb=(\d+)", r.stderr).group(1))
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pp, tg = llama_cpp_bench(a.model, a.threads, a.n_prompt, a.n_gen, a.reps)
    lc_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ppk, tgk = f"pp{a.n_prompt}", f"tg{a.n_gen}"
    print(f"model {os.path.basename(a.model)}, {a.threads} threads, {a.reps} reps, same machine, one run")
    print("| test | edge-runtime t/s | llama.cpp t/s | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for k, theirs in ((ppk, pp), (tgk, tg)):
        print(f"| {k} | {ours[k]:.1f} | {theirs:.1f} | {ours[k] / theirs:.2f}x |")
    print(f"peak RSS: edge-run {our_rss / 1024:.0f} MiB; llama.cpp process {lc_rss / 1024:.0f} MiB "
          f"(of which {base_rss / 1024:.0f} MiB is the Python interpreter before loading)")


if __name__ == "__main__":
    sys.exit(main())
