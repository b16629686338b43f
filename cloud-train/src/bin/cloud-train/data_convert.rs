//! `cloud-train data convert` and `cloud-train data mix`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use cloud_train::data::convert::{self, LengthFilter, MixInput, Source};

#[derive(Args)]
pub struct ConvertArgs {
    /// The layout of the inputs: alpaca, coig-cqia, sharegpt (puffin), mutual, crosswoz,
    /// pku-saferlhf, cvalues, huozi-rlhf, hc3, or json with --map.
    #[arg(long = "from")]
    from: String,
    /// Input files (.jsonl, .json, .txt holding JSON, .parquet; .gz is read through gzip).
    #[arg(long = "in", required = true, num_args = 1..)]
    inputs: Vec<PathBuf>,
    /// The JSONL to write (`sft` or `dpo` data).
    #[arg(long)]
    out: PathBuf,
    /// With --from json: which field holds what, e.g. `--map instruction=question
    /// --map output=answer`, or `--map prompt=q --map chosen=good --map rejected=bad`.
    #[arg(long)]
    map: Vec<String>,
    /// Drop records with more than this many tokens (all texts together, before the chat
    /// template), counted with --tokenizer.
    #[arg(long, requires = "tokenizer")]
    max_tokens: Option<usize>,
    /// HF tokenizer.json for --max-tokens.
    #[arg(long, requires = "max_tokens")]
    tokenizer: Option<PathBuf>,
}

pub fn convert(a: ConvertArgs) -> Result<()> {
    let source = Source::parse(&a.from, &a.map).map_err(anyhow::Error::msg)?;
    let tokenizer = a
        .tokenizer
        .as_ref()
        .map(|t| {
            tokenizers::Tokenizer::from_file(t).map_err(|e| anyhow::anyhow!("{}: {e}", t.display()))
        })
        .transpose()?;
    let count = |text: &str| -> usize {
        tokenizer
            .as_ref()
            .and_then(|t| t.encode(text, false).ok())
            .map_or(0, |e| e.len())
    };
    let filter = a.max_tokens.map(|max| LengthFilter { max, count: &count });
    let r = convert::convert(&source, &a.inputs, &a.out, filter.as_ref())?;
    for (reason, (n, first)) in &r.dropped {
        eprintln!(
            "convert: dropped {n} {} (the first: {first})",
            reason.name()
        );
    }
    let dropped: usize = r.dropped.values().map(|(n, _)| n).sum();
    println!(
        "convert: {} items from {} files -> {} records, {} written to {}, {dropped} dropped",
        r.items,
        a.inputs.len(),
        r.records,
        r.written,
        a.out.display()
    );
    Ok(())
}

#[derive(Args)]
pub struct MixArgs {
    /// Converted JSONL files with their weights: `sft.jsonl:3 emotion.jsonl:1`.
    #[arg(long = "in", required = true, num_args = 1.., value_name = "FILE:WEIGHT")]
    inputs: Vec<String>,
    #[arg(long)]
    out: PathBuf,
    /// Lines to write (default: as many as the scarcest input allows without repeats).
    #[arg(long)]
    total: Option<usize>,
    /// Let an input repeat when its weight asks for more lines than it has.
    #[arg(long)]
    repeat: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn mix(a: MixArgs) -> Result<()> {
    let inputs = a
        .inputs
        .iter()
        .map(|s| {
            let (path, weight) = s
                .rsplit_once(':')
                .with_context(|| format!("--in {s:?}: expected FILE:WEIGHT"))?;
            let weight: f64 = weight
                .parse()
                .with_context(|| format!("--in {s:?}: weight {weight:?} is not a number"))?;
            Ok(MixInput {
                path: path.into(),
                weight,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let r = convert::mix(&inputs, &a.out, a.total, a.repeat, a.seed)?;
    for (i, (have, took)) in inputs.iter().zip(&r.taken) {
        println!(
            "mix: {}: {took} of {have} lines ({:.1} %)",
            i.path.display(),
            100.0 * *took as f64 / r.total.max(1) as f64
        );
    }
    println!(
        "mix: {} lines -> {} (seed {})",
        r.total,
        a.out.display(),
        a.seed
    );
    Ok(())
}
