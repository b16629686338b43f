//! `cloud-train score`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use cloud_train::checkpoint;
use cloud_train::device::Backend;

use crate::common::bar;

#[derive(Args)]
pub struct ScoreArgs {
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
}

pub fn run(a: ScoreArgs) -> Result<()> {
    let device = a.backend.device()?;
    let (llama, _) = checkpoint::load(&a.model, &device)?;
    let tok_path = a.model.join("tokenizer.json");
    let tokenizer = llama_spec::tokenizer::from_tokenizer_json(&tok_path)?;
    let body = std::fs::read_to_string(&a.text)
        .with_context(|| format!("reading {} (UTF-8 text)", a.text.display()))?;
    let ids = tokenizer
        .encode(body.as_str(), false)
        .map_err(|e| anyhow::anyhow!("{}: tokenizing: {e}", a.text.display()))?
        .get_ids()
        .to_vec();
    if ids.len() < 2 {
        bail!(
            "{}: fewer than 2 tokens, nothing to score",
            a.text.display()
        );
    }
    let start = Instant::now();
    let pb = bar(0, "scoring {bar:30} {pos}/{len} windows {eta}");
    let s = cloud_train::score::score(&llama, &ids, a.seq_len, a.batch, &device, |d, t| {
        pb.set_length(t as u64);
        pb.set_position(d as u64);
    });
    pb.finish_and_clear();
    println!(
        "score: {} tokens, {} windows of <= {}, {} predicted: mean NLL {:.6}, perplexity {:.4} ({:.1}s)",
        ids.len(),
        s.windows,
        a.seq_len,
        s.predicted,
        s.mean_nll,
        s.perplexity,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
