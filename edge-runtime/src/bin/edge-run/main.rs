//! `edge-run`: generate with a GGUF model, benchmark it like llama-bench, measure what
//! speculative decoding gains, or measure perplexity like llama-perplexity. One file per
//! command; this one holds the command line and what the commands share.

mod bench;
mod perplexity;
mod run;
mod speculate;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use edge_runtime::{LoadOptions, Model, Session, Speculation};

#[derive(Parser)]
#[command(
    name = "edge-run",
    version,
    about = "CPU inference for Llama GGUF models",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: run::RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Prompt-processing and generation speed, like llama-bench (pp/tg tokens per second).
    Bench(bench::BenchArgs),
    /// Decode speed with and without speculation on a set of chat prompts, checking that the
    /// replies are identical.
    Speculate(speculate::SpeculateArgs),
    /// Perplexity of a text file, computed like llama-perplexity.
    Perplexity(perplexity::PplArgs),
}

#[derive(Args)]
pub struct Common {
    /// The GGUF model.
    #[arg(short, long)]
    pub model: Option<PathBuf>,
    /// Threads (default: all cores).
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// Multiply from the file's layout: no repacked weight copies (faster load, less memory,
    /// slower decode on x86 CPUs with AVX2 or AVX-512).
    #[arg(long)]
    pub keep_file_layout: bool,
}

#[derive(Args)]
pub struct SpeculationArgs {
    /// Guess tokens by prompt lookup (the tokens that followed the context's last n-gram
    /// earlier on) and check them in one pass; the text is unchanged.
    #[arg(long, conflicts_with = "draft_model")]
    pub lookup: bool,
    /// Guess tokens with this smaller model (same vocabulary) and check them in one pass.
    #[arg(long)]
    pub draft_model: Option<PathBuf>,
    /// Most tokens guessed per step (default: 10 with --lookup, 6 with --draft-model).
    #[arg(long)]
    pub draft_max: Option<usize>,
    /// With --draft-model: stop guessing where the draft's top probability is below this.
    #[arg(long, default_value_t = 0.5)]
    pub draft_p_min: f32,
}

impl SpeculationArgs {
    /// The speculation asked for, attaching the draft model to `session` where there is one.
    pub fn apply(&self, common: &Common, session: &mut Session) -> Result<Speculation> {
        if let Some(path) = &self.draft_model {
            let (draft, _) = load_path(path, common)?;
            session.attach_draft_model(draft)?;
            return Ok(Speculation::DraftModel {
                max_draft: self
                    .draft_max
                    .unwrap_or(Speculation::draft_model().max_draft()),
                min_p: self.draft_p_min,
            });
        }
        if !self.lookup {
            return Ok(Speculation::None);
        }
        Ok(match Speculation::prompt_lookup() {
            Speculation::PromptLookup {
                min_ngram,
                max_ngram,
                max_draft,
            } => Speculation::PromptLookup {
                min_ngram,
                max_ngram,
                max_draft: self.draft_max.unwrap_or(max_draft),
            },
            other => other,
        })
    }
}

pub fn default_model() -> PathBuf {
    PathBuf::from("assets/SmolLM2-135M-Instruct.Q4_1.gguf")
}

pub fn load(c: &Common) -> Result<(Arc<Model>, usize)> {
    load_path(&c.model.clone().unwrap_or_else(default_model), c)
}

/// Load `path` with `c`'s options; returns the model and the thread count.
pub fn load_path(path: &std::path::Path, c: &Common) -> Result<(Arc<Model>, usize)> {
    let t = Instant::now();
    let options = LoadOptions {
        keep_file_layout: c.keep_file_layout,
        ..LoadOptions::default()
    };
    let model =
        Model::load(path, options).with_context(|| format!("loading {}", path.display()))?;
    eprintln!(
        "loaded {} ({}, {:.1} MiB, {:.1} MiB repacked) in {:.2} s",
        model.name(),
        path.display(),
        model.file_size() as f64 / 1048576.0,
        model.packed_bytes() as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    let threads = c
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    Ok((Arc::new(model), threads))
}

pub fn isa_name() -> &'static str {
    edge_runtime::kernels::Isa::detect().name()
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Bench(a)) => bench::bench(a),
        Some(Command::Speculate(a)) => speculate::speculate(a),
        Some(Command::Perplexity(a)) => perplexity::perplexity(a),
        None => run::run(cli.run),
    }
}
