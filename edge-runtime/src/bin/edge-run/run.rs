//! `edge-run` (no subcommand): generate a reply or a continuation, streamed to stdout.

use std::io::Write;

use anyhow::{bail, Result};
use clap::Args;
use edge_runtime::{GenerateOptions, Message, SamplerConfig, Session, SessionOptions};

use crate::{load, Common, SpeculationArgs};

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub speculation: SpeculationArgs,
    /// The user message (chat-formatted with the model's template) or, with --raw, the text.
    #[arg(short, long)]
    pub prompt: Option<String>,
    /// A system message for chat formatting.
    #[arg(long)]
    pub system: Option<String>,
    /// Use the prompt as plain text, without the chat template.
    #[arg(long)]
    pub raw: bool,
    /// Tokens to generate at most.
    #[arg(short = 'n', long, default_value_t = 256)]
    pub n_predict: usize,
    /// Context size.
    #[arg(short = 'c', long, default_value_t = 2048)]
    pub ctx_size: usize,
    #[arg(long, default_value_t = 0.8)]
    pub temp: f32,
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 0x5eed)]
    pub seed: u64,
    /// Stop before this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
}

pub fn run(a: RunArgs) -> Result<()> {
    let Some(prompt) = a.prompt.clone() else {
        bail!("--prompt is required (see --help)");
    };
    let (model, threads) = load(&a.common)?;
    let mut session = Session::new(
        model.clone(),
        SessionOptions {
            n_ctx: a.ctx_size,
            n_threads: threads,
            ..Default::default()
        },
    )?;
    let speculation = a.speculation.apply(&a.common, &mut session)?;
    let opts = GenerateOptions {
        max_tokens: a.n_predict,
        sampler: SamplerConfig {
            temperature: a.temp,
            top_k: a.top_k,
            top_p: a.top_p,
            min_p: a.min_p,
            repeat_penalty: a.repeat_penalty,
            seed: a.seed,
            ..SamplerConfig::default()
        },
        stop: a.stop.clone(),
        speculation,
        ..Default::default()
    };
    let mut gen = if a.raw {
        session.complete(&prompt, opts)?
    } else {
        let mut msgs = Vec::new();
        if let Some(s) = &a.system {
            msgs.push(Message::system(s.clone()));
        }
        msgs.push(Message::user(prompt));
        session.chat(&msgs, opts)?
    };
    let mut out = std::io::stdout().lock();
    for piece in gen.by_ref() {
        out.write_all(piece?.text.as_bytes())?;
        out.flush()?;
    }
    writeln!(out)?;
    let s = gen.stats();
    eprintln!(
        "prompt: {} tokens ({} reused) at {:.1} t/s | generation: {} tokens at {:.1} t/s{} | stopped by: {}",
        s.prompt_tokens,
        s.reused_tokens,
        s.prompt_tokens_per_second(),
        s.generated_tokens,
        s.tokens_per_second(),
        if s.drafted_tokens > 0 {
            format!(
                " | guesses: {} of {} accepted ({:.0} %)",
                s.accepted_tokens,
                s.drafted_tokens,
                100.0 * s.acceptance_rate()
            )
        } else {
            String::new()
        },
        gen.finish_reason()
            .map_or_else(|| "-".to_string(), |r| r.to_string())
    );
    Ok(())
}
