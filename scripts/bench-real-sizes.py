#!/usr/bin/env python3
"""edge-runtime against llama.cpp on Llama-3.2-1B- and 3B-shaped files, side by side in one run.

For each shape: a random-weight HF checkpoint of that shape (the Llama-3 tokenizer from
assets/, tied embeddings as in Llama-3.2), converted by llama.cpp's own `convert_hf_to_gguf.py`
(--outtype f16) and quantized by its `llama-quantize` to each type. Then, per file and thread
count, `edge-run bench` and `llama-bench` alternated --rounds times (each reports the mean of
--reps runs; the table takes the median over rounds), with the decode bound (read bandwidth
measured by `edge-run bench`, median over rounds, / bytes of weights read per token) and each
tool's share of it; and, for edge-run, the share measured window by window against the
bandwidth read just before and after each window of 8 tokens (where a machine's bandwidth
moves while the tests run, the median bound misstates both tools' shares).

Files are cached under target/bench-models/ (delete it to rebuild them).

    # llama.cpp tools, from the pinned llama-cpp-python sdist (see tests/fixtures/make_converter_fixture.py):
    cmake -B build-native -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DGGML_NATIVE=ON
    cmake --build build-native --target llama-bench llama-quantize
    LLAMA_CPP=.../vendor/llama.cpp LLAMA_BIN=.../vendor/llama.cpp/build-native/bin \\
        .venv/bin/python scripts/bench-real-sizes.py [--shapes 1b,3b] [--types q4_0,q4_k_m,...]
        [--threads 1,2] [-p 128] [-n 64] [-r 3] [--rounds 3]
    # the quantizer instead: time and peak RSS against llama-quantize on the 1B shape
    ... scripts/bench-real-sizes.py --shapes 1b --quantizer q4_k_m,q6_k [--rounds 3]
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = {
    # Llama-3.2-1B and Llama-3.2-3B (config.json of the released models).
    "1b": dict(hidden_size=2048, num_hidden_layers=16, intermediate_size=8192,
               num_attention_heads=32, num_key_value_heads=8),
    "3b": dict(hidden_size=3072, num_hidden_layers=28, intermediate_size=8192,
               num_attention_heads=24, num_key_value_heads=8),
}
TYPES = ["q4_0", "q4_k_m", "q5_k_m", "q6_k", "q8_0"]


def make_hf(shape, out):
    """A random-weight Llama checkpoint of `shape` in bf16 (what the released ones ship)."""
    import torch
    from safetensors.torch import save_file

    s = SHAPES[shape]
    h, f, nh, nkv = s["hidden_size"], s["intermediate_size"], s["num_attention_heads"], s["num_key_value_heads"]
    hd = h // nh
    vocab = 128256
    g = torch.Generator().manual_seed(0)

    def rnd(*dims, std=0.02):
        return (torch.randn(*dims, generator=g) * std).to(torch.bfloat16)

    def norm(n):
        return (1.0 + torch.randn(n, generator=g) * 0.1).to(torch.bfloat16)

    os.makedirs(out, exist_ok=True)
    tensors = {"model.embed_tokens.weight": rnd(vocab, h), "model.norm.weight": norm(h)}
    for i in range(s["num_hidden_layers"]):
        p = f"model.layers.{i}."
        tensors.update({
            p + "input_layernorm.weight": norm(h),
            p + "post_attention_layernorm.weight": norm(h),
            p + "self_attn.q_proj.weight": rnd(nh * hd, h),
            p + "self_attn.k_proj.weight": rnd(nkv * hd, h),
            p + "self_attn.v_proj.weight": rnd(nkv * hd, h),
            p + "self_attn.o_proj.weight": rnd(h, nh * hd),
            p + "mlp.gate_proj.weight": rnd(f, h),
            p + "mlp.up_proj.weight": rnd(f, h),
            p + "mlp.down_proj.weight": rnd(h, f),
        })
    save_file(tensors, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    write_config(shape, out)


def write_config(shape, out):
    """config.json, the Llama-3 tokenizer from assets/ and tokenizer_config.json of a `shape`
    checkpoint (Llama-3.2's settings: rope scaling, tied embeddings)."""
    s = SHAPES[shape]
    h, nh = s["hidden_size"], s["num_attention_heads"]
    hd, vocab = h // nh, 128256
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab,
        "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
        "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "tie_word_embeddings": True, "torch_dtype": "bfloat16", "hidden_act": "silu",
        "bos_token_id": 128000, "eos_token_id": 128009, "head_dim": hd, **s,
    }
    json.dump(config, open(os.path.join(out, "config.json"), "w"), indent=1)
    shutil.copy(os.path.join(ROOT, "assets", "llama3-tokenizer.json"), os.path.join(out, "tokenizer.json"))
    json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
               "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 131072},
              open(os.path.join(out, "tokenizer_config.json"), "w"))


def files(shape, types, llama_cpp, llama_bin):
    d = os.path.join(ROOT, "target", "bench-models")
    os.makedirs(d, exist_ok=True)
    f16 = os.path.join(d, f"llama-{shape}.f16.gguf")
    if not os.path.exists(f16):
        hf = os.path.join(d, f"llama-{shape}-hf")
        if not os.path.exists(os.path.join(hf, "config.json")):
            print(f"making a random {shape} checkpoint in {hf}", flush=True)
            make_hf(shape, hf)
        subprocess.run([sys.executable, os.path.join(llama_cpp, "convert_hf_to_gguf.py"), hf,
                        "--outtype", "f16", "--outfile", f16 + ".tmp"], check=True,
                       env={**os.environ, "PYTHONPATH": os.path.join(llama_cpp, "gguf-py")})
        os.rename(f16 + ".tmp", f16)
    out = {}
    for ty in types:
        q = os.path.join(d, f"llama-{shape}.{ty}.gguf")
        if not os.path.exists(q):
            subprocess.run([os.path.join(llama_bin, "llama-quantize"), f16, q + ".tmp", ty.upper()],
                           check=True, capture_output=True)
            os.rename(q + ".tmp", q)
        out[ty] = q
    return out


def ours(model, threads, p, n, reps):
    exe = os.path.join(ROOT, "target", "release", "edge-run")
    r = subprocess.run([exe, "bench", "-m", model, "-t", str(threads), "-p", str(p), "-n", str(n),
                        "-r", str(reps)], capture_output=True, text=True, check=True)
    # Each rep as its own sample is not printed; the mean is what edge-run reports.
    v = {m.group(1): float(m.group(2)) for m in re.finditer(r"\| (pp\d+|tg\d+) \| ([\d.]+) ±", r.stdout)}
    bound = re.search(r"weights read per token: ([\d.]+) MiB; measured read bandwidth ([\d.]+) GB/s -> decode bound (\d+)", r.stdout)
    # The share of the bound measured next to each window of tokens (see `edge-run bench`).
    win = re.search(r"windows of \d+ tokens with a steady bandwidth \(([\d.]+)-([\d.]+) GB/s\): median (\d+) % "
                    r"of the bound \(range (\d+)-(\d+) %\); the half at the higher bandwidths \(from ([\d.]+) GB/s\): "
                    r"median (\d+) %", r.stdout)
    windows = None if win is None else tuple(float(x) for x in win.groups())
    return v, float(bound.group(1)), float(bound.group(2)), float(bound.group(3)), windows


def theirs(model, threads, p, n, reps, llama_bin):
    r = subprocess.run([os.path.join(llama_bin, "llama-bench"), "-m", model, "-t", str(threads), "-p", str(p),
                        "-n", str(n), "-r", str(reps), "-o", "json"], capture_output=True, text=True, check=True)
    v = {}
    for row in json.loads(r.stdout):
        key = f"pp{row['n_prompt']}" if row["n_prompt"] else f"tg{row['n_gen']}"
        v[key] = row["avg_ts"]
    return v


def measure(cmd):
    """Wall seconds and peak RSS (MiB) of one child process."""
    import time
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        sys.exit(f"{cmd[0]} failed: {cmd}")
    return time.perf_counter() - t, usage.ru_maxrss / 1024


def quantizer(shape, types, llama_cpp, llama_bin, rounds):
    """`quantize requantize` (F16 GGUF -> type) and `quantize convert` (HF directory -> type)
    against `llama-quantize` (F16 GGUF -> type) on the same machine, alternated, medians."""
    files(shape, [], llama_cpp, llama_bin)  # makes the F16 file and the HF checkpoint if missing
    f16 = os.path.join(ROOT, "target", "bench-models", f"llama-{shape}.f16.gguf")
    hf = os.path.join(ROOT, "target", "bench-models", f"llama-{shape}-hf")
    exe = os.path.join(ROOT, "target", "release", "quantize")
    out = os.path.join(ROOT, "target", "bench-models", "quantizer-out.gguf")
    print(f"\n| {shape} F16 -> | quantize requantize s / MiB | quantize convert (from HF) s / MiB "
          "| llama-quantize s / MiB | requantize time, RSS vs llama-quantize |")
    print("| --- | --- | --- | --- | --- |")
    for ty in types:
        runs = {"requantize": [], "convert": [], "llama": []}
        for _ in range(rounds):
            runs["requantize"].append(measure([exe, "requantize", "--in", f16, "--out", out, "--type", ty, "--quiet"]))
            runs["convert"].append(measure([exe, "convert", "--in", hf, "--out", out, "--type", ty, "--quiet"]))
            runs["llama"].append(measure([os.path.join(llama_bin, "llama-quantize"), f16, out, ty.upper()]))
        med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)) for k, v in runs.items()}
        cell = lambda k: f"{med[k][0]:.1f} s / {med[k][1]:.0f} MiB"  # noqa: E731
        print(f"| {ty} | {cell('requantize')} | {cell('convert')} | {cell('llama')} "
              f"| {med['requantize'][0] / med['llama'][0]:.2f}x, {med['requantize'][1] / med['llama'][1]:.2f}x |",
              flush=True)
    os.remove(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="1b,3b")
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("-p", type=int, default=128)
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("-r", "--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1, help="alternations of the two tools (median taken)")
    ap.add_argument("--quantizer", metavar="TYPES",
                    help="instead: time and peak RSS of quantize requantize / convert against llama-quantize, "
                         "on the first shape, for these types (e.g. q4_k_m,q6_k)")
    a = ap.parse_args()
    llama_cpp, llama_bin = os.environ["LLAMA_CPP"], os.environ["LLAMA_BIN"]
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "edge-runtime", "--bin", "edge-run",
                    "-p", "quantize", "--bin", "quantize"], cwd=ROOT, check=True)
    if a.quantizer:
        return quantizer(a.shapes.split(",")[0], a.quantizer.split(","), llama_cpp, llama_bin, a.rounds)
    rows = []
    for shape in a.shapes.split(","):
        for ty, path in files(shape, a.types.split(","), llama_cpp, llama_bin).items():
            for t in map(int, a.threads.split(",")):
                o, l, bws, wins = [], [], [], []
                for _ in range(a.rounds):
                    v, mib, bw, _, win = ours(path, t, a.p, a.n, a.reps)
                    o.append(v)
                    bws.append(bw)
                    if win:
                        wins.append(win)
                    l.append(theirs(path, t, a.p, a.n, a.reps, llama_bin))
                # The bandwidth measure moves between runs: the median of the rounds'.
                bw = statistics.median(bws)
                bound = (mib, bw, bw * 1e9 / (mib * 1048576))
                med = lambda xs, k: statistics.median(x[k] for x in xs)  # noqa: E731
                pk, tk = f"pp{a.p}", f"tg{a.n}"
                r = dict(shape=shape, type=ty, threads=t, pp_ours=med(o, pk), pp_lc=med(l, pk),
                         tg_ours=med(o, tk), tg_lc=med(l, tk), mib=bound[0], bw=bound[1], bound=bound[2],
                         # Per round: (bw low, bw high, median %, min %, max %, upper-half bw, upper-half %).
                         win_all=statistics.median(w[2] for w in wins) if wins else float("nan"),
                         win_hi=statistics.median(w[6] for w in wins) if wins else float("nan"),
                         win_bw=(min((w[0] for w in wins), default=float("nan")),
                                 max((w[1] for w in wins), default=float("nan"))))
                rows.append(r)
                print(f"{shape} {ty} t={t}: pp {r['pp_ours']:.1f}/{r['pp_lc']:.1f} = {r['pp_ours'] / r['pp_lc']:.2f}x, "
                      f"tg {r['tg_ours']:.1f}/{r['tg_lc']:.1f} = {r['tg_ours'] / r['tg_lc']:.2f}x", flush=True)
    print(f"\n| shape | type | MiB/token | threads | GB/s | pp{a.p} ours | llama.cpp | ratio | tg{a.n} ours | llama.cpp | ratio "
          "| bound t/s | ours % | llama.cpp % | ours % in windows | at the higher GB/s | window GB/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['shape']} | {r['type']} | {r['mib']:.0f} | {r['threads']} | {r['bw']:.1f} | {r['pp_ours']:.1f} | {r['pp_lc']:.1f} "
              f"| {r['pp_ours'] / r['pp_lc']:.2f}x | {r['tg_ours']:.1f} | {r['tg_lc']:.1f} | {r['tg_ours'] / r['tg_lc']:.2f}x "
              f"| {r['bound']:.0f} | {100 * r['tg_ours'] / r['bound']:.0f} | {100 * r['tg_lc'] / r['bound']:.0f} "
              f"| {r['win_all']:.0f} | {r['win_hi']:.0f} | {r['win_bw'][0]:.0f}-{r['win_bw'][1]:.0f} |")
    print("GB/s: read bandwidth measured by edge-run bench after its tests (its threads reading a 512 MiB huge-page "
          "buffer, the best of three ways to read), median over rounds; bound = GB/s / weights read per token. "
          "Windows: edge-run bench's decode in windows of 8 tokens, each between two bandwidth probes, kept where "
          "the probes agree within 10 %; the median over rounds of each round's median share, and of the half of "
          "the windows at the higher bandwidths. llama-bench cannot be windowed: its share is against the median bound.")


if __name__ == "__main__":
    sys.exit(main())
