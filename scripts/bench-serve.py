#!/usr/bin/env python3
"""edge-serve against llama-server: aggregate decode throughput of 1, 2, 4 and 8 concurrent
greedy streams on the same GGUF file, same threads, side by side in one run.

For each stream count N and round: start the server with N slots (ours: `edge-serve
--parallel N`; llama.cpp: `llama-server --parallel N` with N times the per-slot context, since
its -c is divided among the slots), wait for /health, send one warm-up request, then N
different /v1/completions requests at once (temperature 0, max_tokens -n) and time them until
the last reply. Aggregate tokens/s = completion tokens of all N / wall time (prompts are short,
~20 tokens, so this is decode). Tools alternate within each round; the table takes the median
over rounds.

The default model is the Llama-3.2-1B-shaped Q4_0 file of scripts/bench-real-sizes.py
(target/bench-models/llama-1b.q4_0.gguf). When it is missing it is made here without torch:
a random bf16 checkpoint (numpy), converted to F16 by our `quantize convert` (tested bit-exact
against convert_hf_to_gguf.py) and quantized to Q4_0 by llama.cpp's own `llama-quantize`.

    # llama.cpp tools from the llama-cpp-python sdist (see scripts/bench-real-sizes.py). On a CPU
    # with AMX, llama-server 0.3.36 built with GGML_NATIVE segfaults in ggml_backend_amx_mul_mat
    # at its first decode; build it without AMX instead (its llama-bench then decodes at the
    # same speed as its server, and the README says how that compares with the AMX build):
    cmake -B build-noamx -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DGGML_NATIVE=ON \
        "-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" \
        "-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    cmake --build build-noamx --target llama-server llama-quantize
    cargo build --release -p edge-serve -p quantize
    LLAMA_BIN=.../vendor/llama.cpp/build-noamx/bin python3 scripts/bench-serve.py \\
        [--model F.gguf] [--streams 1,2,4,8] [-t 2] [-n 64] [--rounds 3]
"""
import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "target", "bench-models")


def real_sizes():
    """scripts/bench-real-sizes.py as a module: its shapes and checkpoint config."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("bench_real_sizes",
                                                  os.path.join(ROOT, "scripts", "bench-real-sizes.py"))
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def write_random_checkpoint(out):
    """A random-weight Llama-3.2-1B-shaped checkpoint in bf16, written tensor by tensor."""
    import numpy as np

    s = real_sizes().SHAPES["1b"]
    h, f, nh, nkv = s["hidden_size"], s["intermediate_size"], s["num_attention_heads"], s["num_key_value_heads"]
    hd, vocab = h // nh, 128256
    shapes = {"model.embed_tokens.weight": (vocab, h), "model.norm.weight": (h,)}
    for i in range(s["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (nh * hd, h), p + "self_attn.k_proj.weight": (nkv * hd, h),
            p + "self_attn.v_proj.weight": (nkv * hd, h), p + "self_attn.o_proj.weight": (h, nh * hd),
            p + "mlp.gate_proj.weight": (f, h), p + "mlp.up_proj.weight": (f, h),
            p + "mlp.down_proj.weight": (h, f),
        })
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in shapes.items():
        n = 2 * int(np.prod(shape))
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    tmp = os.path.join(out, "model.safetensors.tmp")
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(text)))
        fh.write(text)
        for name, shape in shapes.items():
            if name.endswith("norm.weight"):
                x = (1.0 + rng.standard_normal(shape, dtype=np.float32) * 0.1).astype(np.float32)
            else:
                x = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
            fh.write((x.view(np.uint32) >> 16).astype("<u2").tobytes())
    os.rename(tmp, os.path.join(out, "model.safetensors"))
    real_sizes().write_config("1b", out)


def default_model(llama_bin):
    q = os.path.join(MODELS, "llama-1b.q4_0.gguf")
    if os.path.exists(q):
        return q
    os.makedirs(MODELS, exist_ok=True)
    f16 = os.path.join(MODELS, "llama-1b.f16.gguf")
    if not os.path.exists(f16):
        hf = os.path.join(MODELS, "llama-1b-hf")
        if not os.path.exists(os.path.join(hf, "model.safetensors")):
            print(f"making a random 1B checkpoint in {hf}", flush=True)
            write_random_checkpoint(hf)
        subprocess.run([os.path.join(ROOT, "target", "release", "quantize"), "convert", "--in", hf,
                        "--out", f16 + ".tmp", "--type", "f16", "--name", "llama-1b", "--quiet"], check=True)
        os.rename(f16 + ".tmp", f16)
    subprocess.run([os.path.join(llama_bin, "llama-quantize"), f16, q + ".tmp", "Q4_0"],
                   check=True, capture_output=True)
    os.rename(q + ".tmp", q)
    return q


def request(port, path, body, timeout=600):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


def wait_healthy(port, proc, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            sys.exit(f"server on port {port} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        time.sleep(0.2)
    sys.exit(f"server on port {port} not healthy after {timeout} s")


PROMPT = ("Stream {i}: a quiet evening by the sea, the waves come in slowly and the light fades "
          "over the water while")


def run_streams(port, n_streams, n_predict):
    """(aggregate tokens/s, completion tokens) for n_streams concurrent requests."""
    results = [None] * n_streams

    def one(i):
        results[i] = request(port, "/v1/completions", {
            "model": "bench", "prompt": PROMPT.format(i=i), "max_tokens": n_predict,
            "temperature": 0, "seed": 1})

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n_streams)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    tokens = sum(r["usage"]["completion_tokens"] for r in results)
    return tokens / wall, tokens


def serve(tool, model, n_streams, threads, ctx, port, llama_bin):
    if tool == "ours":
        cmd = [os.path.join(ROOT, "target", "release", "edge-serve"), "-m", model, "--port", str(port),
               "--parallel", str(n_streams), "-t", str(threads), "-c", str(ctx)]
    else:
        cmd = [os.path.join(llama_bin, "llama-server"), "-m", model, "--port", str(port),
               "--parallel", str(n_streams), "-t", str(threads), "-c", str(ctx * n_streams)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model")
    ap.add_argument("--streams", default="1,2,4,8")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("-n", "--n-predict", type=int, default=64)
    ap.add_argument("-c", "--ctx", type=int, default=512, help="context per slot")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--port", type=int, default=18080)
    a = ap.parse_args()
    llama_bin = os.environ.get("LLAMA_BIN")
    if not llama_bin:
        sys.exit("set LLAMA_BIN to llama.cpp's build/bin (llama-server, llama-quantize)")
    model = a.model or default_model(llama_bin)
    streams = [int(s) for s in a.streams.split(",")]
    rates = {(tool, n): [] for tool in ("ours", "llama") for n in streams}
    for rnd in range(a.rounds):
        for n in streams:
            for tool in ("ours", "llama"):
                proc = serve(tool, model, n, a.threads, a.ctx, a.port, llama_bin)
                try:
                    wait_healthy(a.port, proc)
                    run_streams(a.port, 1, 8)  # warm-up: pages in, threads up
                    rate, tokens = run_streams(a.port, n, a.n_predict)
                finally:
                    proc.terminate()
                    proc.wait()
                rates[(tool, n)].append(rate)
                print(f"round {rnd + 1}: {tool:5} {n} streams: {rate:7.2f} t/s ({tokens} tokens)", flush=True)
    name = os.path.basename(model)
    print(f"\n{name}, {a.threads} threads, {a.n_predict} tokens per stream, median of {a.rounds}\n")
    print("| streams | edge-serve t/s | x one stream | llama-server t/s | x one stream | ours / llama.cpp |")
    print("| --- | --- | --- | --- | --- | --- |")
    base = {tool: statistics.median(rates[(tool, streams[0])]) for tool in ("ours", "llama")}
    for n in streams:
        o, l = statistics.median(rates[("ours", n)]), statistics.median(rates[("llama", n)])
        print(f"| {n} | {o:.1f} | {o / base['ours']:.2f}x | {l:.1f} | {l / base['llama']:.2f}x | {o / l:.2f}x |")


if __name__ == "__main__":
    main()
