//! `cloud-train resave`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use cloud_train::checkpoint::{self, SaveOptions};
use cloud_train::device::Backend;

use crate::common::parse_dtype;

#[derive(Args)]
pub struct ResaveArgs {
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

pub fn run(a: ResaveArgs) -> Result<()> {
    let device = Backend::Flex.device()?;
    let (llama, config) = checkpoint::load(&a.model, &device)?;
    let opts = SaveOptions {
        dtype: parse_dtype(&a.dtype)?,
        max_shard_bytes: parse_size(&a.shard_size)?,
        tokenizer_from: Some(a.model.clone()),
        ..SaveOptions::default()
    };
    checkpoint::save(&llama, &config, &a.out, &opts)?;
    println!(
        "resave: {} -> {} ({})",
        a.model.display(),
        a.out.display(),
        a.dtype
    );
    Ok(())
}
