//! `cloud-train init`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use cloud_train::checkpoint::{self, SaveOptions};
use cloud_train::device::Backend;
use cloud_train::model::Llama;
use llama_spec::LlamaConfig;

use crate::common::parse_dtype;

#[derive(Args)]
pub struct InitArgs {
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
}

pub fn run(a: InitArgs) -> Result<()> {
    let c = LlamaConfig::from_file(&a.config)?;
    let device = Backend::Flex.device()?;
    let llama = Llama::init(&c, a.seed, &device);
    let opts = SaveOptions {
        dtype: parse_dtype(&a.dtype)?,
        tokenizer_from: a.tokenizer_from,
        ..SaveOptions::default()
    };
    checkpoint::save(&llama, &c, &a.out, &opts)?;
    println!(
        "init: {} parameters, seed {} -> {}",
        burn::module::Module::num_params(&llama),
        a.seed,
        a.out.display()
    );
    Ok(())
}
