//! `edge-run perplexity`: perplexity of a text file, computed like llama-perplexity.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use edge_runtime::{Session, SessionOptions};

use crate::{load, Common};

#[derive(Args)]
pub struct PplArgs {
    #[command(flatten)]
    pub common: Common,
    /// The text file.
    #[arg(short, long)]
    pub file: PathBuf,
    /// Chunk (context) size.
    #[arg(short = 'c', long, default_value_t = 512)]
    pub ctx_size: usize,
    /// Prompt batch size.
    #[arg(short = 'b', long, default_value_t = 128)]
    pub batch: usize,
}

pub fn perplexity(a: PplArgs) -> Result<()> {
    let (model, threads) = load(&a.common)?;
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let tokens = model.tokenize(&text, true)?;
    eprintln!(
        "{} tokens, {} chunks of {}",
        tokens.len(),
        tokens.len() / a.ctx_size.max(1),
        a.ctx_size
    );
    let mut session = Session::new(
        model.clone(),
        SessionOptions {
            n_ctx: a.ctx_size,
            n_threads: threads,
            n_batch: a.batch,
        },
    )?;
    let t = Instant::now();
    let r = edge_runtime::perplexity(&mut session, &tokens, |c, ppl| {
        print!("[{}]{ppl:.4},", c + 1);
        let _ = std::io::stdout().flush();
    })
    .with_context(|| format!("perplexity of {}", a.file.display()))?;
    println!("\nFinal estimate: PPL = {:.4} +/- {:.5}", r.ppl, r.stderr);
    eprintln!(
        "{} tokens scored in {:.1} s ({:.1} t/s evaluated)",
        r.scored_tokens,
        t.elapsed().as_secs_f64(),
        (r.chunks * a.ctx_size) as f64 / t.elapsed().as_secs_f64()
    );
    Ok(())
}
