//! `cloud-train data prepare` (and the dispatch of `data convert` and `data mix`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::{Args, Subcommand};
use cloud_train::data::prepare::{prepare, PrepareOptions};
use cloud_train::data::sources::{ReadOptions, TxtSplit};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Subcommand)]
pub enum DataCommand {
    /// Tokenize raw corpora (.txt/.md, .jsonl/.json(.gz), .parquet; files or directories) into
    /// memory-mappable token shards with a train/val split.
    Prepare(PrepareArgs),
    /// Convert a public SFT or preference data set from its published layout into the JSONL
    /// `sft` and `dpo` read, dropping (and counting) duplicates, empty and over-long records.
    Convert(crate::data_convert::ConvertArgs),
    /// Mix converted JSONL files by weight into one, reproducibly (seeded).
    Mix(crate::data_convert::MixArgs),
}

#[derive(Args)]
pub struct PrepareArgs {
    /// Input files or directories (walked recursively in name order).
    #[arg(long = "in", required = true, num_args = 1..)]
    inputs: Vec<PathBuf>,
    /// Output directory (replaced atomically; left alone when already up to date).
    #[arg(long)]
    out: PathBuf,
    /// HF tokenizer.json (the model's).
    #[arg(long)]
    tokenizer: PathBuf,
    /// JSON field / Parquet column with the text.
    #[arg(long, default_value = "text")]
    text_field: String,
    /// How .txt files split into documents: paragraph (blank lines), line, file.
    #[arg(long, default_value = "paragraph")]
    txt_split: TxtSplit,
    /// Longer JSON lines or text documents are skipped (and counted).
    #[arg(long, default_value_t = 16 << 20)]
    max_doc_bytes: usize,
    /// Fraction of documents held out for validation.
    #[arg(long, default_value_t = 0.01)]
    val_fraction: f64,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Document separator token (default: the tokenizer's end-of-text token).
    #[arg(long)]
    eos_token: Option<String>,
    /// Tokens per shard file.
    #[arg(long, default_value_t = 1 << 28)]
    shard_tokens: u64,
    /// Rebuild even if the output is up to date.
    #[arg(long)]
    force: bool,
}

pub fn run(cmd: DataCommand) -> Result<()> {
    let a = match cmd {
        DataCommand::Prepare(a) => a,
        DataCommand::Convert(a) => return crate::data_convert::convert(a),
        DataCommand::Mix(a) => return crate::data_convert::mix(a),
    };
    let opts = PrepareOptions {
        read: ReadOptions {
            text_field: a.text_field,
            txt_split: a.txt_split,
            max_doc_bytes: a.max_doc_bytes,
        },
        val_fraction: a.val_fraction,
        seed: a.seed,
        eos_token: a.eos_token,
        shard_tokens: a.shard_tokens,
        force: a.force,
        ..PrepareOptions::new(a.inputs, a.out.clone(), a.tokenizer)
    };
    let start = Instant::now();
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "prepare {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let done = prepare(&opts, |d, t| {
        bar.set_length(t);
        bar.set_position(d);
    })?;
    bar.finish_and_clear();
    for p in &done.ignored {
        eprintln!(
            "prepare: ignored {} (not .txt/.md/.jsonl/.json/.gz/.parquet)",
            p.display()
        );
    }
    let secs = start.elapsed().as_secs_f64();
    let m = &done.manifest;
    if done.up_to_date {
        println!(
            "prepare: {} is up to date ({})",
            a.out.display(),
            m.summary()
        );
    } else {
        let input_bytes: u64 = m.inputs.iter().map(|f| f.bytes).sum();
        println!(
            "prepare: {} -> {}: {} in {secs:.1}s ({:.1} s/GB of input)",
            m.inputs.len(),
            a.out.display(),
            m.summary(),
            secs / (input_bytes.max(1) as f64 / 1e9)
        );
    }
    Ok(())
}
