//! Chat examples for SFT and DPO: the tokenizer and chat template of the run, the JSONL files
//! read once into examples with a seeded validation split and counted skips, the shuffled
//! per-epoch order, and the padded batches.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;

use burn::prelude::*;
use llama_spec::chat::{ChatTemplate, CHATML_TEMPLATE, LLAMA3_TEMPLATE};
use serde_json::Value;

use super::config::AlignConfig;
use super::data::Encoded;
use crate::data::{splitmix64, Permutation};
use crate::train::config::{Invalid, ModelSection};
use crate::train::{Batch, TrainError};

/// The chat template: `[model] chat_template`, else the model directory's
/// `tokenizer_config.json`, else Llama-3's. Also the `tokenizer_config.json` to write into
/// checkpoints when the model directory has none (so that `quantize convert` puts the template
/// into the GGUF and the edge runtime formats chats the same way).
pub fn chat_template(model: &ModelSection) -> Result<(ChatTemplate, Option<Vec<u8>>), TrainError> {
    let from_dir = model
        .path
        .as_ref()
        .map(|p| p.join("tokenizer_config.json"))
        .filter(|p| p.exists());
    let builtin = |name: &str| -> Option<(&'static str, &'static str, &'static str)> {
        match name {
            "llama3" => Some((LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>")),
            "chatml" => Some((CHATML_TEMPLATE, "", "<|im_end|>")),
            _ => None,
        }
    };
    let llama3 = || ChatTemplate::new(LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>", "llama3");
    let (tmpl, write) = match (model.chat_template.as_deref(), from_dir) {
        (Some(name), _) if builtin(name).is_some() => {
            let (src, bos, eos) = builtin(name).unwrap_or_default();
            (ChatTemplate::new(src, bos, eos, name)?, true)
        }
        (Some(path), _) => (
            ChatTemplate::from_tokenizer_config(path)?.ok_or_else(|| {
                Invalid(format!(
                    "[model] chat_template: {path} has no chat_template"
                ))
            })?,
            true,
        ),
        (None, Some(p)) => match ChatTemplate::from_tokenizer_config(&p)? {
            Some(t) => (t, false),
            None => (llama3()?, true),
        },
        (None, None) => (llama3()?, true),
    };
    let config = write.then(|| {
        let json = serde_json::json!({
            "bos_token": tmpl.bos_token, "eos_token": tmpl.eos_token,
            "chat_template": tmpl.source(),
        });
        format!("{json:#}\n").into_bytes()
    });
    Ok((tmpl, config))
}

/// The run's `tokenizer.json`: `[model] tokenizer`, else the model directory's.
pub fn tokenizer_path(model: &ModelSection) -> Result<PathBuf, Invalid> {
    match (&model.tokenizer, &model.path) {
        (Some(t), _) => Ok(t.clone()),
        (None, Some(p)) => Ok(p.join("tokenizer.json")),
        (None, None) => Err(Invalid::new(
            "[model]: give `tokenizer` (a tokenizer.json) for a random-init model",
        )),
    }
}

/// The examples of a run, split into training and validation.
pub struct Split<T> {
    pub train: Vec<T>,
    pub val: Vec<T>,
    /// Records skipped, by reason.
    pub skipped: BTreeMap<String, u64>,
}

/// Read every record of `[data] train`, turn each into an example with `convert` (or a skip
/// reason), and split train/val by a seeded hash of the record's ordinal.
pub fn read_split<T>(
    cfg: &AlignConfig,
    mut convert: impl FnMut(&Value) -> Result<T, &'static str>,
) -> Result<Split<T>, TrainError> {
    let mut split = Split {
        train: Vec::new(),
        val: Vec::new(),
        skipped: BTreeMap::new(),
    };
    let mut ordinal = 0u64;
    for path in &cfg.data.train {
        let f = std::fs::File::open(path).map_err(TrainError::io(path))?;
        let mut r = std::io::BufReader::new(f);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = r
                .read_until(b'\n', &mut line)
                .map_err(TrainError::io(path))?;
            if n == 0 {
                break;
            }
            let mut skip = |why: &str| *split.skipped.entry(why.to_string()).or_default() += 1;
            let Ok(text) = std::str::from_utf8(&line) else {
                skip("invalid_utf8");
                continue;
            };
            if text.trim().is_empty() {
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(text) else {
                skip("malformed_json");
                continue;
            };
            let to_val = cfg.data.val_fraction > 0.0
                && ((splitmix64(cfg.data.seed ^ splitmix64(ordinal)) >> 11) as f64
                    / (1u64 << 53) as f64)
                    < cfg.data.val_fraction;
            ordinal += 1;
            match convert(&v) {
                Ok(e) if to_val => split.val.push(e),
                Ok(e) => split.train.push(e),
                Err(why) => skip(why),
            }
        }
    }
    if split.train.is_empty() {
        return Err(TrainError::input(
            format!("{:?}", cfg.data.train),
            format!("no usable training examples (skipped: {:?})", split.skipped),
        ));
    }
    Ok(split)
}

/// Example `i` of an endless stream of epochs over `n` examples, each epoch its own seeded
/// permutation.
pub fn shuffled(i: u64, n: usize, seed: u64) -> usize {
    let n = n as u64;
    let perm = Permutation::new(n, splitmix64(seed ^ (i / n)));
    perm.apply(i % n) as usize
}

/// Token ids and loss masks of `es`.
pub fn rows_of(es: &[&Encoded]) -> Vec<(Vec<u32>, Vec<bool>)> {
    es.iter().map(|e| (e.ids.clone(), e.mask.clone())).collect()
}

/// The rows padded to the longest into one batch.
pub fn batch_of(rows: &[(Vec<u32>, Vec<bool>)], device: &Device) -> Batch {
    let r: Vec<(&[u32], &[u32], &[bool])> = rows
        .iter()
        .map(|(i, m)| (i.as_slice(), i.as_slice(), m.as_slice()))
        .collect();
    Batch::masked(&r, 0, device)
}

/// Per row: how many positions predict a trained token.
pub fn counts(rows: &[(Vec<u32>, Vec<bool>)]) -> Vec<usize> {
    rows.iter()
        .map(|(_, m)| m.iter().skip(1).filter(|&&x| x).count())
        .collect()
}

/// Tokens of the rows (padding not counted).
pub fn tokens(rows: &[(Vec<u32>, Vec<bool>)]) -> u64 {
    rows.iter().map(|(i, _)| i.len() as u64).sum()
}
