//! `cloud-train`: the trainer's command line.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use cloud_train::checkpoint::{self, safetensors::Dtype, SaveOptions};
use cloud_train::device::Backend;
use cloud_train::model::Llama;
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
    match Cli::parse().command {
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
            };
            checkpoint::save(&llama, &config, &out, &opts)
                .with_context(|| format!("saving {}", out.display()))?;
            println!("resave: {} -> {} ({dtype})", model.display(), out.display());
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
