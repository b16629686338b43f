#!/usr/bin/env python3
"""Training-step speed and peak memory: cloud-train (burn, CPU flex backend) beside PyTorch
(transformers' LlamaForCausalLM + torch.optim.AdamW) on the same config, batch, sequence length
and thread count, in one run. Each measurement runs in its own process so that peak RSS is its
own.

    .venv/bin/python scripts/bench-train-vs-torch.py [--config configs/models/bench-20m.json]
        [--seq-len 256] [--batch 4] [--steps 5] [-t 2]

Needs torch and transformers in the venv and builds `cloud-train` in release mode.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PLANS = [
    ("plain graph", []),
    ("+ chunked CE (256)", ["--ce-chunk", "256"]),
    ("+ layer checkpointing", ["--ce-chunk", "256", "--checkpoint-layers"]),
    ("+ blocked attention (64)", ["--ce-chunk", "256", "--checkpoint-layers",
                                  "--attention-block", "64"]),
    ("+ BF16 compute", ["--ce-chunk", "256", "--checkpoint-layers", "--attention-block", "64",
                        "--bf16"]),
]


def torch_bench(args):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = json.load(open(args.config))
    model = LlamaForCausalLM(LlamaConfig(**cfg)).float().train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, eps=1e-8)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, cfg["vocab_size"], (args.batch, args.seq_len), generator=g)
    losses = []
    for i in range(args.steps + 1):
        if i == 1:
            start = time.perf_counter()
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(out.loss.detach()))
    step_s = (time.perf_counter() - start) / args.steps
    print(json.dumps({
        "params": sum(p.numel() for p in model.parameters()),
        "tokens_per_s": args.batch * args.seq_len / step_s,
        "step_s": step_s,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "attn": model.config._attn_implementation,
        "torch": torch.__version__,
    }))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=os.path.join(ROOT, "configs/models/bench-20m.json"))
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--torch-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_only:
        return torch_bench(args)

    subprocess.run(["cargo", "build", "--release", "-p", "cloud-train"], cwd=ROOT, check=True)
    exe = os.path.join(ROOT, "target", "release", "cloud-train")
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    common = ["--seq-len", str(args.seq_len), "--batch", str(args.batch)]

    def torch_run():
        out = subprocess.run([sys.executable, __file__, "--torch-only", "--config", args.config,
                              *common, "--steps", str(args.steps), "-t", str(args.threads)],
                             env=env, check=True, capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    def ours(flags):
        out = subprocess.run([exe, "bench-step", "--config", args.config, *common,
                              "--steps", str(args.steps), "--json", *flags],
                             env=env, check=True, capture_output=True, text=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    ref = torch_run()
    print(f"config {os.path.relpath(args.config, ROOT)}: {ref['params'] / 1e6:.1f}M params, "
          f"batch {args.batch} x seq {args.seq_len}, {args.threads} threads, "
          f"{args.steps} timed steps; PyTorch {ref['torch']} ({ref['attn']} attention): "
          f"{ref['tokens_per_s']:.1f} tokens/s, peak RSS {ref['peak_rss_mib']:.0f} MiB, "
          f"loss {ref['first_loss']:.3f} -> {ref['last_loss']:.3f}")
    print()
    print("| cloud-train plan | tokens/s | vs PyTorch | peak RSS MiB | vs PyTorch | loss first -> last |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, flags in PLANS:
        r = ours(flags)
        print(f"| {name} | {r['tokens_per_s']:.1f} | {r['tokens_per_s'] / ref['tokens_per_s']:.2f}x "
              f"| {r['peak_rss_mib']:.0f} | {r['peak_rss_mib'] / ref['peak_rss_mib']:.2f}x "
              f"| {r['first_loss']:.3f} -> {r['last_loss']:.3f} |", flush=True)
    again = torch_run()
    print(f"\nPyTorch again after ours (noise check): {again['tokens_per_s']:.1f} tokens/s")


if __name__ == "__main__":
    main()
