//! `cloud-train bench-step`: training steps timed on random data.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use cloud_train::device::Backend;
use cloud_train::dist::{DataParallel, Update};
use cloud_train::model::Llama;
use cloud_train::train::{loss_and_grads, Batch, MemoryPlan};
use llama_spec::LlamaConfig;

use crate::common::bar;

#[derive(Args)]
pub struct BenchStepArgs {
    /// HF config.json (random weights, seed 0).
    #[arg(long)]
    config: PathBuf,
    #[arg(long, default_value_t = 256)]
    seq_len: usize,
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Recompute each layer in backward (layer-level activation checkpointing).
    #[arg(long)]
    checkpoint_layers: bool,
    /// Attention backward by blocks of this many queries (with --checkpoint-layers).
    #[arg(long)]
    attention_block: Option<usize>,
    /// Cross-entropy over chunks of this many positions.
    #[arg(long)]
    ce_chunk: Option<usize>,
    /// BF16 compute, f32 master weights.
    #[arg(long)]
    bf16: bool,
    #[arg(long, default_value = "flex")]
    backend: Backend,
    /// The device's peak dense TFLOP/s at this precision (H100/H200 BF16: 989): prints
    /// the model FLOPs utilization (MFU).
    #[arg(long)]
    peak_tflops: Option<f64>,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct BenchReport {
    params: usize,
    tokens_per_s: f64,
    step_s: f64,
    /// Of `step_s`: the optimizer update.
    optim_s: f64,
    first_loss: f64,
    last_loss: f64,
    peak_rss_mib: f64,
    /// Model FLOPs per token (PaLM's count: 6 N + 12 L d s, forward and backward).
    flops_per_token: f64,
    /// Achieved model TFLOP/s, and its fraction of `--peak-tflops`.
    model_tflops: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    mfu: Option<f64>,
}

/// Peak resident memory of this process, MiB; 0 where unknown.
fn peak_rss_mib() -> f64 {
    cloud_train::budget::peak_rss_bytes().map_or(0.0, |b| b as f64 / (1u64 << 20) as f64)
}

fn bench_step(
    c: &LlamaConfig,
    device: &burn::prelude::Device,
    seq_len: usize,
    batch: usize,
    steps: usize,
    plan: &MemoryPlan,
    peak_tflops: Option<f64>,
) -> Result<BenchReport> {
    use burn::module::Module;
    let mut model = Llama::init(c, 0, device).train();
    let params = model.num_params();
    // The optimizer `cpt` runs (torch's AdamW, global-norm clipping), on one rank.
    let mut optim =
        DataParallel::single(cloud_train::train::AdamWSettings::default(), &model, device);
    // Random token ids, fixed seed: the same data for every plan.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % u64::from(c.vocab_size)) as u32
    };
    let rows: Vec<Vec<u32>> = (0..batch)
        .map(|_| (0..seq_len).map(|_| next()).collect())
        .collect();
    let data = Batch::causal_lm(&rows, device);
    let pb = bar((steps + 1) as u64, "bench {bar:30} {pos}/{len} steps {msg}");
    let mut losses = Vec::new();
    let mut start = Instant::now();
    let mut optim_s = 0.0;
    for i in 0..=steps {
        if i == 1 {
            start = Instant::now(); // step 0 is the warm-up
            optim_s = 0.0;
        }
        let out = loss_and_grads(&model, &data, plan);
        let t = Instant::now();
        model = optim
            .step_full(
                model,
                out.grads,
                Update {
                    lr: 1e-3,
                    max_norm: Some(1.0),
                },
            )
            .map_err(|e| anyhow::anyhow!("bench-step: step {i}: {e}"))?
            .0;
        optim_s += t.elapsed().as_secs_f64();
        losses.push(out.loss);
        pb.set_message(format!("loss {:.4}", out.loss));
        pb.inc(1);
    }
    pb.finish_and_clear();
    let step_s = start.elapsed().as_secs_f64() / steps.max(1) as f64;
    let tokens_per_s = (batch * seq_len) as f64 / step_s;
    let flops_per_token = cloud_train::budget::flops_per_token(c, seq_len);
    let model_tflops = flops_per_token * tokens_per_s / 1e12;
    Ok(BenchReport {
        params,
        tokens_per_s,
        flops_per_token,
        model_tflops,
        mfu: peak_tflops.map(|p| model_tflops / p),
        step_s,
        optim_s: optim_s / steps.max(1) as f64,
        first_loss: losses.first().copied().unwrap_or(f64::NAN),
        last_loss: losses.last().copied().unwrap_or(f64::NAN),
        peak_rss_mib: peak_rss_mib(),
    })
}

pub fn run(a: BenchStepArgs) -> Result<()> {
    let c = LlamaConfig::from_file(&a.config)?;
    let device = a.backend.device()?;
    let plan = MemoryPlan {
        checkpoint_layers: a.checkpoint_layers,
        attention_block: a.attention_block,
        ce_chunk: a.ce_chunk,
        bf16: a.bf16,
    };
    let (batch, seq_len, steps) = (a.batch, a.seq_len, a.steps);
    let r = bench_step(&c, &device, seq_len, batch, steps, &plan, a.peak_tflops)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "bench-step: {} params, {batch}x{seq_len} tokens/step, {plan:?}: {:.1} tokens/s ({:.3} s/step over {steps} steps, optimizer {:.3} s), {:.2} model TFLOP/s{}, loss {:.4} -> {:.4}, peak RSS {:.0} MiB",
            r.params, r.tokens_per_s, r.step_s, r.optim_s, r.model_tflops,
            r.mfu.map_or(String::new(), |m| format!(" (MFU {:.1} %)", 100.0 * m)),
            r.first_loss, r.last_loss, r.peak_rss_mib
        );
    }
    Ok(())
}
