#!/usr/bin/env python3
"""Decode under contention: edge-runtime against llama.cpp, side by side in one run.

For each model file: quiet `-t 1` decode, then `-t 2` decode while another process keeps one
of the two cores busy (a spinning Python loop), for `edge-run bench` and `llama-bench`
alternated, median over --rounds. A tool "does not collapse" when its loaded `-t 2` speed
stays within 2x of its quiet `-t 1` speed.

    LLAMA_BIN=.../vendor/llama.cpp/build-native/bin \\
        python3 scripts/bench-contention.py assets/SmolLM2-135M-Instruct.Q4_1.gguf \\
        target/bench-models/llama-1b.q4_0.gguf [-n 32] [-r 2] [--rounds 3]
"""
import argparse
import multiprocessing
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
bench = __import__("bench-real-sizes")


def spin():
    while True:
        pass


def tg(tool, model, threads, n, reps, llama_bin):
    key = f"tg{n}"
    if tool == "ours":
        return bench.ours(model, threads, 0, n, reps)[0][key]
    return bench.theirs(model, threads, 0, n, reps, llama_bin)[key]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("-r", "--reps", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    llama_bin = os.environ.get("LLAMA_BIN")
    if not llama_bin:
        sys.exit("LLAMA_BIN must point at llama.cpp's build/bin (llama-bench)")
    print(f"| file | ours: quiet -t 1 / loaded -t 2 (t/s) | llama.cpp: quiet -t 1 / loaded -t 2 (t/s) |")
    print("| --- | --- | --- |")
    for model in a.models:
        res = {(tool, mode): [] for tool in ("ours", "theirs") for mode in ("quiet", "loaded")}
        for _ in range(a.rounds):
            for tool in ("ours", "theirs"):
                res[(tool, "quiet")].append(tg(tool, model, 1, a.n, a.reps, llama_bin))
            busy = multiprocessing.Process(target=spin, daemon=True)
            busy.start()
            try:
                for tool in ("ours", "theirs"):
                    res[(tool, "loaded")].append(tg(tool, model, 2, a.n, a.reps, llama_bin))
            finally:
                busy.terminate()
                busy.join()
        med = {k: statistics.median(v) for k, v in res.items()}
        cell = lambda tool: (f"{med[(tool, 'quiet')]:.1f} / {med[(tool, 'loaded')]:.1f} = "
                             f"{med[(tool, 'loaded')] / med[(tool, 'quiet')]:.2f}x")
        print(f"| {os.path.basename(model)} | {cell('ours')} | {cell('theirs')} |", flush=True)


if __name__ == "__main__":
    main()
