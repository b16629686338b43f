//! Alignment: supervised fine-tuning and DPO on chat data, as objectives of the shared run
//! harness (`train::harness`).

pub mod config;
pub mod data;
pub mod dpo;
pub mod examples;
pub mod objective;
pub mod sft;

use std::collections::BTreeMap;

pub use config::AlignConfig;
pub use dpo::{Dpo, Pair};
pub use objective::{ChatLoss, ChatObjective};
pub use sft::Sft;

use crate::train::config::RunConfig;
use crate::train::harness::{self, Event, RunSummary};
use crate::train::state::Resume;
use crate::train::TrainError;
use data::{encode, parse_preference, parse_sft, Encoded, Turns};
use examples::{chat_template, read_split, tokenizer_path, Split};

/// Which alignment stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Sft,
    Dpo,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Sft => "sft",
            Stage::Dpo => "dpo",
        }
    }
}

/// What an SFT or DPO run ended with.
#[derive(Debug, Clone)]
pub struct AlignSummary {
    pub run: RunSummary,
    pub train_examples: usize,
    pub val_examples: usize,
    /// Records skipped by reason.
    pub skipped: BTreeMap<String, u64>,
}

/// Run (or continue) an SFT or DPO config.
pub fn run(
    cfg: &AlignConfig,
    stage: Stage,
    resume: Resume,
    mut event: impl FnMut(Event),
) -> Result<AlignSummary, TrainError> {
    let tok = llama_spec::tokenizer::from_tokenizer_json(tokenizer_path(&cfg.model)?)?;
    let (tmpl, tokenizer_config) = chat_template(&cfg.model)?;
    let fits = |e: &Encoded| e.ids.len() <= cfg.data.max_len && e.trained() > 0;
    let sections = cfg.sections();
    fn finish<L: ChatLoss>(o: &ChatObjective<L>, run: RunSummary) -> AlignSummary {
        let s = o.split();
        AlignSummary {
            run,
            train_examples: s.train.len(),
            val_examples: s.val.len(),
            skipped: s.skipped.clone(),
        }
    }
    let note = |skipped: &BTreeMap<String, u64>, event: &mut dyn FnMut(Event)| {
        if !skipped.is_empty() {
            event(Event::Note(format!("skipped records: {skipped:?}")));
        }
    };
    match stage {
        Stage::Sft => {
            let split: Split<Encoded> = read_split(cfg, |v| {
                let msgs = parse_sft(v).map_err(|_| "bad_record")?;
                match encode(&tok, &tmpl, &msgs, Turns::All) {
                    Ok(e) if fits(&e) => Ok(e),
                    Ok(_) => Err("too_long"),
                    Err(_) => Err("template_error"),
                }
            })?;
            note(&split.skipped, &mut event);
            let mut o = ChatObjective::new(cfg, Sft, split, tokenizer_config);
            let run = harness::run(sections, &mut o, resume, event)?;
            Ok(finish(&o, run))
        }
        Stage::Dpo => {
            let split: Split<Pair> = read_split(cfg, |v| {
                let (prompt, chosen, rejected) = parse_preference(v).map_err(|_| "bad_record")?;
                let conv = |reply: &str| {
                    let mut m = prompt.clone();
                    m.push(llama_spec::chat::Message::assistant(reply));
                    encode(&tok, &tmpl, &m, Turns::Last)
                };
                match (conv(&chosen), conv(&rejected)) {
                    (Ok(c), Ok(r)) if fits(&c) && fits(&r) => Ok(Pair::new(c, r)),
                    (Ok(_), Ok(_)) => Err("too_long"),
                    _ => Err("template_error"),
                }
            })?;
            note(&split.skipped, &mut event);
            event(Event::Note(format!(
                "reference log-probabilities of {} pairs",
                split.train.len() + split.val.len()
            )));
            let loss = Dpo {
                settings: cfg.dpo.clone(),
                gbs: cfg.train.gbs,
            };
            let mut o = ChatObjective::new(cfg, loss, split, tokenizer_config);
            let run = harness::run(sections, &mut o, resume, event)?;
            Ok(finish(&o, run))
        }
    }
}
