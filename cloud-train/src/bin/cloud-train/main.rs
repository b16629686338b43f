//! `cloud-train`: the trainer's command line.

mod align_cmd;
mod cpt_cmd;
mod data_cmd;
mod eval_cmd;
mod pipeline_cmd;
mod sweep_cmd;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use cloud_train::checkpoint::{self, safetensors::Dtype, SaveOptions};
use cloud_train::device::Backend;
use cloud_train::model::Llama;
use cloud_train::train::{loss_and_grads, Batch, MemoryPlan};
use indicatif::{ProgressBar, ProgressStyle};
use llama_spec::LlamaConfig;

#[derive(Parser)]
#[command(
    version,
    about = "Continual pre-training, SFT and DPO of Llama-3 models on burn"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prepare training data.
    Data {
        #[command(subcommand)]
        command: data_cmd::DataCommand,
    },
    /// Continual pre-training on an ALMR mixture, from a TOML config; resumes by default.
    Cpt(cpt_cmd::RunArgs),
    /// Supervised fine-tuning on chat JSONL (loss on assistant tokens only).
    Sft(cpt_cmd::RunArgs),
    /// Direct Preference Optimization on preference JSONL (TRL's losses and metrics).
    Dpo(cpt_cmd::RunArgs),
    /// One CPT run per (ALMR, LR) grid point (here, resumable, or as a Slurm array);
    /// `sweep collect DIR` gathers results.csv.
    Sweep(sweep_cmd::SweepArgs),
    /// Fit the loss and metric surfaces of a sweep, the paper's two frontiers, and their
    /// intersection; draw contours.png.
    Frontier(sweep_cmd::FrontierArgs),
    /// Evaluate a checkpoint directory or a GGUF file on the benchmarks (C-Eval, MMLU, ...);
    /// writes results JSON (the `eval.json` that `sweep collect` reads) and prints a table.
    Eval(eval_cmd::EvalArgs),
    /// From the shipped GGUF and sample corpora to a quantized chatbot: CPT, SFT, DPO, export,
    /// quantization, evaluation before and after; resumable by stage.
    Pipeline(pipeline_cmd::PipelineArgs),
    /// One markdown table (rows = models, columns = benchmarks) from several `eval` results.
    EvalTable(eval_cmd::TableArgs),
    /// Draw loss curves (train, and validation per corpus) from metrics.jsonl files as a PNG.
    Plot {
        /// One or more metrics.jsonl files (several runs share the chart, labelled by folder).
        #[arg(long, required = true, num_args = 1..)]
        metrics: Vec<PathBuf>,
        #[arg(long, default_value = "loss.png")]
        out: PathBuf,
        /// Training tokens on the x axis instead of steps.
        #[arg(long)]
        tokens: bool,
        /// The series: `loss`, or another metric such as DPO's `rewards/margins`.
        #[arg(long, default_value = "loss")]
        y: String,
        #[arg(long, default_value_t = 1000)]
        width: u32,
        #[arg(long, default_value_t = 600)]
        height: u32,
    },
    /// Mean NLL and perplexity of a text file under a checkpoint (compare with transformers).
    Score {
        /// HF checkpoint directory (config.json, tokenizer.json, safetensors).
        #[arg(long)]
        model: PathBuf,
        /// UTF-8 text file.
        #[arg(long)]
        text: PathBuf,
        /// Window length in tokens; windows do not overlap.
        #[arg(long, default_value_t = 512)]
        seq_len: usize,
        /// Windows per forward pass.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        #[arg(long, default_value = "flex")]
        backend: Backend,
    },
    /// Load a checkpoint and save it again (dtype and shard size of your choice).
    Resave {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// f32, f16 or bf16.
        #[arg(long, default_value = "bf16")]
        dtype: String,
        /// Largest shard, e.g. 5GB, 200MB, 60KB.
        #[arg(long, default_value = "5GB")]
        shard_size: String,
    },
    /// Time training steps (forward + backward + AdamW) on random data; prints tokens/s and
    /// peak memory. Compare with PyTorch: scripts/bench-train-vs-torch.py.
    BenchStep {
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
    },
    /// Write a randomly initialized checkpoint for a config.json (from-scratch runs, benches).
    Init {
        /// HF config.json.
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, default_value = "f32")]
        dtype: String,
        /// Directory whose tokenizer files are copied along.
        #[arg(long)]
        tokenizer_from: Option<PathBuf>,
    },
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

/// Peak resident memory of this process (Linux `VmHWM`), MiB; 0 where unknown.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn bench_step(
    c: &LlamaConfig,
    device: &burn::prelude::Device,
    seq_len: usize,
    batch: usize,
    steps: usize,
    plan: &MemoryPlan,
    peak_tflops: Option<f64>,
) -> BenchReport {
    use burn::module::Module;
    let mut model = Llama::init(c, 0, device).train();
    let params = model.num_params();
    // The optimizer `cpt` runs (torch's AdamW, global-norm clipping), on one rank.
    let mut optim = cloud_train::dist::DataParallel::single(
        cloud_train::train::AdamWSettings::default(),
        &model,
        device,
    );
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
    let bar = ProgressBar::new((steps + 1) as u64).with_style(
        ProgressStyle::with_template("bench {bar:30} {pos}/{len} steps {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
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
        model = match optim.step(model, out.grads, 1e-3, Some(1.0)) {
            Ok((m, _)) => m,
            Err(e) => {
                eprintln!("bench-step: step {i}: {e}");
                std::process::exit(1);
            }
        };
        optim_s += t.elapsed().as_secs_f64();
        losses.push(out.loss);
        bar.set_message(format!("loss {:.4}", out.loss));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let step_s = start.elapsed().as_secs_f64() / steps.max(1) as f64;
    let tokens_per_s = (batch * seq_len) as f64 / step_s;
    let flops_per_token = 6.0 * params as f64
        + 12.0 * c.num_hidden_layers as f64 * c.hidden_size as f64 * seq_len as f64;
    let model_tflops = flops_per_token * tokens_per_s / 1e12;
    BenchReport {
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
    }
}

fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim().to_ascii_uppercase();
    let (num, mult) = [
        ("GB", 1u64 << 30),
        ("MB", 1 << 20),
        ("KB", 1 << 10),
        ("B", 1),
    ]
    .iter()
    .find_map(|(suffix, m)| t.strip_suffix(suffix).map(|n| (n.trim().to_string(), *m)))
    .unwrap_or((t.clone(), 1));
    let n: f64 = num
        .parse()
        .with_context(|| format!("shard size {s:?}: expected a number with GB/MB/KB"))?;
    if n <= 0.0 {
        bail!("shard size {s:?} must be positive");
    }
    Ok((n * mult as f64) as u64)
}

fn parse_dtype(s: &str) -> Result<Dtype> {
    Dtype::parse(s).with_context(|| format!("dtype {s:?}: expected f32, f16 or bf16"))
}

fn main() -> Result<()> {
    cloud_train::alloc::keep_freed_memory();
    match Cli::parse().command {
        Command::Data { command } => data_cmd::run(command)?,
        Command::Cpt(args) => cpt_cmd::run(args)?,
        Command::Sweep(args) => sweep_cmd::run(args)?,
        Command::Frontier(args) => sweep_cmd::frontier(args)?,
        Command::Eval(args) => eval_cmd::run(args)?,
        Command::EvalTable(args) => eval_cmd::table(args)?,
        Command::Pipeline(args) => pipeline_cmd::run(args)?,
        Command::Sft(args) => align_cmd::run(args, cloud_train::align::Stage::Sft)?,
        Command::Dpo(args) => align_cmd::run(args, cloud_train::align::Stage::Dpo)?,
        Command::Plot {
            metrics,
            out,
            tokens,
            y,
            width,
            height,
        } => {
            let runs = metrics
                .iter()
                .map(|m| cloud_train::plot::read_metrics(m, tokens, &y))
                .collect::<Result<Vec<_>, _>>()?;
            cloud_train::plot::plot(&runs, &out, tokens, &y, (width, height))?;
            let steps: usize = runs.iter().map(|r| r.train.len()).sum();
            println!(
                "plot: {} run(s), {steps} steps -> {}",
                runs.len(),
                out.display()
            );
        }
        Command::Score {
            model,
            text,
            seq_len,
            batch,
            backend,
        } => {
            let device = backend.device().map_err(anyhow::Error::msg)?;
            let (llama, _) = checkpoint::load(&model, &device)
                .with_context(|| format!("loading {}", model.display()))?;
            let tok_path = model.join("tokenizer.json");
            let tokenizer = llama_spec::tokenizer::from_tokenizer_json(&tok_path)
                .with_context(|| format!("loading {}", tok_path.display()))?;
            let body = std::fs::read_to_string(&text)
                .with_context(|| format!("reading {} (UTF-8 text)", text.display()))?;
            let ids = tokenizer
                .encode(body.as_str(), false)
                .map_err(|e| anyhow::anyhow!("{}: tokenizing: {e}", text.display()))?
                .get_ids()
                .to_vec();
            if ids.len() < 2 {
                bail!("{}: fewer than 2 tokens, nothing to score", text.display());
            }
            let start = Instant::now();
            let bar = ProgressBar::new(0).with_style(
                ProgressStyle::with_template("scoring {bar:30} {pos}/{len} windows {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let s = cloud_train::score::score(&llama, &ids, seq_len, batch, &device, |d, t| {
                bar.set_length(t as u64);
                bar.set_position(d as u64);
            });
            bar.finish_and_clear();
            println!(
                "score: {} tokens, {} windows of <= {seq_len}, {} predicted: mean NLL {:.6}, perplexity {:.4} ({:.1}s)",
                ids.len(),
                s.windows,
                s.predicted,
                s.mean_nll,
                s.perplexity,
                start.elapsed().as_secs_f64()
            );
        }
        Command::Resave {
            model,
            out,
            dtype,
            shard_size,
        } => {
            let device = Backend::Flex.device().map_err(anyhow::Error::msg)?;
            let (llama, config) = checkpoint::load(&model, &device)
                .with_context(|| format!("loading {}", model.display()))?;
            let opts = SaveOptions {
                dtype: parse_dtype(&dtype)?,
                max_shard_bytes: parse_size(&shard_size)?,
                tokenizer_from: Some(model.clone()),
                ..SaveOptions::default()
            };
            checkpoint::save(&llama, &config, &out, &opts)
                .with_context(|| format!("saving {}", out.display()))?;
            println!("resave: {} -> {} ({dtype})", model.display(), out.display());
        }
        Command::BenchStep {
            config,
            seq_len,
            batch,
            steps,
            checkpoint_layers,
            attention_block,
            ce_chunk,
            bf16,
            backend,
            peak_tflops,
            json,
        } => {
            let c = LlamaConfig::from_file(&config)?;
            let device = backend.device().map_err(anyhow::Error::msg)?;
            let plan = MemoryPlan {
                checkpoint_layers,
                attention_block,
                ce_chunk,
                bf16,
            };
            let r = bench_step(&c, &device, seq_len, batch, steps, &plan, peak_tflops);
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "bench-step: {} params, {batch}x{seq_len} tokens/step, {plan:?}: {:.1} tokens/s ({:.3} s/step over {steps} steps, optimizer {:.3} s), {:.2} model TFLOP/s{}, loss {:.4} -> {:.4}, peak RSS {:.0} MiB",
                    r.params, r.tokens_per_s, r.step_s, r.optim_s, r.model_tflops,
                    r.mfu.map_or(String::new(), |m| format!(" (MFU {:.1} %)", 100.0 * m)),
                    r.first_loss, r.last_loss, r.peak_rss_mib
                );
            }
        }
        Command::Init {
            config,
            out,
            seed,
            dtype,
            tokenizer_from,
        } => {
            let c = LlamaConfig::from_file(&config)?;
            let device = Backend::Flex.device().map_err(anyhow::Error::msg)?;
            let llama = Llama::init(&c, seed, &device);
            let opts = SaveOptions {
                dtype: parse_dtype(&dtype)?,
                tokenizer_from,
                ..SaveOptions::default()
            };
            checkpoint::save(&llama, &c, &out, &opts)
                .with_context(|| format!("saving {}", out.display()))?;
            println!(
                "init: {} parameters, seed {seed} -> {}",
                burn::module::Module::num_params(&llama),
                out.display()
            );
        }
    }
    Ok(())
}
