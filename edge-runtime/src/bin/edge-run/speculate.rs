//! `edge-run speculate`: greedy decode speed on chat prompts without speculation, with prompt
//! lookup and (given `--draft-model`) with a draft model, run side by side; fails if any reply
//! differs from plain decoding's.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use edge_runtime::{GenerateOptions, Message, SamplerConfig, Session, SessionOptions, Speculation};

use crate::{isa_name, load, Common, SpeculationArgs};

#[derive(Args)]
pub struct SpeculateArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub speculation: SpeculationArgs,
    /// Tokens generated per prompt at most.
    #[arg(short = 'n', long, default_value_t = 128)]
    pub n_predict: usize,
    /// Prompts, one per line (default: a built-in set of rewriting, summary, code and
    /// open-ended chat prompts).
    #[arg(long)]
    pub prompts: Option<PathBuf>,
}

/// What chat users ask: some replies repeat their prompt (rewrites, summaries, code fixes),
/// some do not (open-ended talk).
const PROMPTS: &[&str] = &[
    "Rewrite this message to my landlord so it sounds polite but firm: The heater in my apartment has been broken for two weeks. I have asked you three times to fix it. It is very cold at night and my children are getting sick. Please send someone to repair the heater this week.",
    "Fix the bug in this Python function and show the whole corrected function:\n\ndef average(numbers):\n    total = 0\n    for n in numbers:\n        total += n\n    return total / len(numbers) + 1",
    "Summarize this in two sentences: Sleep matters for mental health. People who sleep less than six hours a night report more stress, more anxiety and lower mood. Regular sleep times, less screen time before bed and a quiet, dark bedroom all help. If poor sleep lasts for weeks, talking to a doctor is a good idea.",
    "Translate into English: 我最近压力很大，晚上总是睡不着。朋友们都说我应该多休息，但是工作太多了。",
    "I feel lonely today. Can you talk with me?",
    "What are three small things I can do when I feel anxious before an exam?",
];

pub fn speculate(a: SpeculateArgs) -> Result<()> {
    let (model, threads) = load(&a.common)?;
    let prompts: Vec<String> = match &a.prompts {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("reading {}", p.display()))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        None => PROMPTS.iter().map(|p| p.to_string()).collect(),
    };
    if prompts.is_empty() {
        bail!("no prompts");
    }
    let opts = SessionOptions {
        n_ctx: 2048,
        n_threads: threads,
        ..Default::default()
    };
    let plain = Session::new(model.clone(), opts.clone())?;
    let mut lookup = Session::new(model.clone(), opts.clone())?;
    let lookup_spec = SpeculationArgs {
        lookup: true,
        draft_model: None,
        ..a.speculation
    }
    .apply(&a.common, &mut lookup)?;
    let mut modes: Vec<(&str, Session, Speculation)> = vec![
        ("plain", plain, Speculation::None),
        ("prompt lookup", lookup, lookup_spec),
    ];
    if a.speculation.draft_model.is_some() {
        let mut s = Session::new(model.clone(), opts)?;
        let spec = a.speculation.apply(&a.common, &mut s)?;
        modes.push(("draft model", s, spec));
    }
    println!(
        "{} ({} threads, {}), greedy, up to {} tokens per prompt{}",
        model.name(),
        threads,
        isa_name(),
        a.n_predict,
        modes
            .get(2)
            .and_then(|m| m.1.draft_model())
            .map_or(String::new(), |d| format!(", draft {}", d.name()))
    );
    let mut header = "| prompt | tokens |".to_string();
    let mut rule = "| --- | ---: |".to_string();
    for (name, _, _) in &modes {
        header += &format!(" {name} t/s |");
        rule += " ---: |";
    }
    println!("{header}\n{rule}");
    let mut totals = vec![(0usize, Duration::ZERO, 0usize, 0usize); modes.len()];
    for prompt in &prompts {
        let messages = [Message::user(prompt.clone())];
        let mut reference: Option<Vec<u32>> = None;
        let mut row = String::new();
        let mut plain_rate = 0.0;
        for (i, (name, session, spec)) in modes.iter_mut().enumerate() {
            session.reset();
            let mut gen = session.chat(
                &messages,
                GenerateOptions {
                    max_tokens: a.n_predict,
                    sampler: SamplerConfig::greedy(),
                    speculation: *spec,
                    ..Default::default()
                },
            )?;
            for piece in gen.by_ref() {
                piece?;
            }
            let st = gen.stats().clone();
            let tokens = gen.tokens().to_vec();
            drop(gen);
            match &reference {
                None => reference = Some(tokens.clone()),
                Some(r) if *r != tokens => bail!(
                    "{name} changed the reply to {prompt:?}:\nplain: {:?}\n{name}: {:?}",
                    model.detokenize(r),
                    model.detokenize(&tokens)
                ),
                Some(_) => {}
            }
            let t = &mut totals[i];
            t.0 += st.generated_tokens;
            t.1 += st.generation_time;
            t.2 += st.drafted_tokens;
            t.3 += st.accepted_tokens;
            if i == 0 {
                plain_rate = st.tokens_per_second();
                row += &format!(" {plain_rate:.1} |");
            } else {
                row += &format!(
                    " {:.1} ({:.2}x, {:.0} % accepted) |",
                    st.tokens_per_second(),
                    st.tokens_per_second() / plain_rate,
                    100.0 * st.acceptance_rate()
                );
            }
        }
        let short: String = prompt.chars().take(40).collect();
        let n = reference.as_ref().map_or(0, Vec::len);
        println!(
            "| {}{} | {n} |{row}",
            short.replace('|', "/").replace('\n', " "),
            if prompt.chars().count() > 40 {
                "..."
            } else {
                ""
            }
        );
    }
    let rate = |t: &(usize, Duration, usize, usize)| t.0 as f64 / t.1.as_secs_f64().max(1e-9);
    let mut summary = format!("all prompts: plain {:.1} t/s", rate(&totals[0]));
    for ((name, _, _), t) in modes.iter().zip(&totals).skip(1) {
        summary += &format!(
            "; {name} {:.1} t/s = {:.2}x ({} of {} guesses accepted)",
            rate(t),
            rate(t) / rate(&totals[0]),
            t.3,
            t.2
        );
    }
    println!("{summary}; every reply identical to plain decoding");
    Ok(())
}
