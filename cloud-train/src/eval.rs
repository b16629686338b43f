//! The evaluation harness's [`LanguageModel`] over the burn model: what `cloud-train eval`
//! uses for HF checkpoint directories (trainer checkpoints during CPT and sweeps). GGUF files
//! go through edge-runtime (`llm_eval::EdgeModel`) instead.
//!
//! Log-likelihoods are batched: sequences are right-padded (the model is causal, so padding
//! after a sequence never changes its earlier positions) and only the hidden states of the
//! continuation positions go through the output head. Generation is greedy and recomputes the
//! whole prefix each step (no KV cache): fine for the small evaluation sets of a sweep, slow
//! for long generations on big models (use the GGUF export and edge-runtime for those).

use std::path::Path;

use burn::prelude::*;
use llama_spec::chat::{ChatTemplate, Message, LLAMA3_TEMPLATE};
use llama_spec::LlamaConfig;
use llm_eval::backend::{cut_at_stop, fit, score_rows};
use llm_eval::{EvalError, GenOutput, GenRequest, LanguageModel, Loglik, LoglikRequest};
use tokenizers::Tokenizer;

use crate::model::Llama;

pub struct BurnModel {
    model: Llama,
    config: LlamaConfig,
    tokenizer: Tokenizer,
    /// Bytes per token id (empty for special tokens).
    bytes: Vec<Vec<u8>>,
    bos: Option<u32>,
    stop_ids: Vec<u32>,
    chat: ChatTemplate,
    device: Device,
    name: String,
    /// Padded tokens per forward pass when scoring.
    pub batch_tokens: usize,
}

fn model_err(e: impl std::fmt::Display) -> EvalError {
    EvalError::Model(e.to_string())
}

impl BurnModel {
    /// Load an HF checkpoint directory (weights, `config.json`, `tokenizer.json`, and
    /// `tokenizer_config.json` for BOS and the chat template when present).
    pub fn load(dir: &Path, device: &Device) -> Result<Self, EvalError> {
        let (model, config) = crate::checkpoint::load(dir, device).map_err(model_err)?;
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = llama_spec::tokenizer::from_tokenizer_json(&tok_path).map_err(model_err)?;
        let dec = llama_spec::tokenizer::byte_decoder();
        let specials: std::collections::HashSet<u32> = tokenizer
            .get_added_tokens_decoder()
            .iter()
            .filter(|(_, t)| t.special)
            .map(|(&id, _)| id)
            .collect();
        let bytes: Vec<Vec<u8>> = (0..config.vocab_size)
            .map(|id| match tokenizer.id_to_token(id) {
                Some(_) if specials.contains(&id) => Vec::new(),
                Some(t) => llama_spec::tokenizer::byte_level_bytes(&t, &dec),
                None => Vec::new(),
            })
            .collect();
        let cfg_path = dir.join("tokenizer_config.json");
        let tcfg: serde_json::Value = std::fs::read_to_string(&cfg_path)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        let token_text = |k: &str| match &tcfg[k] {
            serde_json::Value::String(s) => Some(s.clone()),
            v => v["content"].as_str().map(str::to_string),
        };
        // BOS unless the tokenizer config turns it off (Llama-3's adds it by its post-processor).
        let bos = token_text("bos_token")
            .and_then(|t| tokenizer.token_to_id(&t))
            .or(config.bos_token_id)
            .filter(|_| tcfg["add_bos_token"].as_bool() != Some(false));
        let mut stop_ids: Vec<u32> = config
            .eos_token_id
            .as_ref()
            .map(|e| e.ids())
            .unwrap_or_default();
        for t in ["<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"] {
            stop_ids.extend(tokenizer.token_to_id(t));
        }
        if let Some(e) = token_text("eos_token").and_then(|t| tokenizer.token_to_id(&t)) {
            stop_ids.push(e);
        }
        let chat = match ChatTemplate::from_tokenizer_config(&cfg_path) {
            Ok(Some(t)) => t,
            _ => {
                let bos_text = bos
                    .and_then(|b| tokenizer.id_to_token(b))
                    .unwrap_or_default();
                ChatTemplate::new(
                    LLAMA3_TEMPLATE,
                    &bos_text,
                    "<|eot_id|>",
                    "built-in Llama-3 template",
                )
                .map_err(model_err)?
            }
        };
        let name = dir.file_name().map_or_else(
            || dir.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(Self {
            model,
            config,
            tokenizer,
            bytes,
            bos,
            stop_ids,
            chat,
            device: device.clone(),
            name,
            batch_tokens: 4096,
        })
    }

    fn ids_tensor(&self, rows: &[Vec<u32>], len: usize) -> Tensor<2, Int> {
        let flat: Vec<i64> = rows
            .iter()
            .flat_map(|r| {
                r.iter()
                    .map(|&t| i64::from(t))
                    .chain(std::iter::repeat_n(0, len - r.len()))
            })
            .collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), len]), &self.device)
    }

    /// Logits (f32, row-major) at `positions` of each row: `[sum of positions, vocab]`.
    fn logits_at(&self, rows: &[Vec<u32>], positions: &[std::ops::Range<usize>]) -> Vec<f32> {
        let len = rows.iter().map(Vec::len).max().unwrap_or(1);
        let hidden = self.model.hidden(self.ids_tensor(rows, len));
        let h = hidden.dims()[2];
        let picked: Vec<Tensor<3>> = positions
            .iter()
            .enumerate()
            .map(|(b, r)| hidden.clone().slice([b..b + 1, r.clone(), 0..h]))
            .collect();
        let logits = self.model.logits(Tensor::cat(picked, 1));
        logits
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default()
    }
}

impl LanguageModel for BurnModel {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn encode(&self, text: &str) -> Result<Vec<u32>, EvalError> {
        let enc = self.tokenizer.encode(text, false).map_err(model_err)?;
        Ok(enc.get_ids().to_vec())
    }

    fn bos(&self) -> Option<u32> {
        self.bos
    }

    fn token_bytes(&self, id: u32) -> Vec<u8> {
        self.bytes.get(id as usize).cloned().unwrap_or_default()
    }

    fn chat_prompt(&self, messages: &[Message]) -> Result<String, EvalError> {
        self.chat.render(messages, true).map_err(model_err)
    }

    fn max_len(&self) -> usize {
        self.config.max_position_embeddings as usize
    }

    fn loglikelihood(&mut self, reqs: &[LoglikRequest]) -> Result<Vec<Loglik>, EvalError> {
        let vocab = self.config.vocab_size as usize;
        let mut out = Vec::with_capacity(reqs.len());
        let mut i = 0;
        while i < reqs.len() {
            // Grow the batch while the padded size fits the token budget.
            let mut rows: Vec<Vec<u32>> = Vec::new();
            let mut spans = Vec::new();
            let mut targets = Vec::new();
            let mut longest = 0;
            while i < reqs.len() {
                let r = fit(&reqs[i], self.max_len());
                if r.context.is_empty() || r.continuation.is_empty() {
                    return Err(EvalError::Model(
                        "a log-likelihood request needs a context (BOS at least) and a continuation".into(),
                    ));
                }
                let mut seq = r.context.clone();
                seq.extend_from_slice(&r.continuation[..r.continuation.len() - 1]);
                let l = longest.max(seq.len());
                if !rows.is_empty() && l * (rows.len() + 1) > self.batch_tokens {
                    break;
                }
                longest = l;
                let start = r.context.len() - 1;
                spans.push(start..start + r.continuation.len());
                targets.push(r.continuation);
                rows.push(seq);
                i += 1;
            }
            let logits = self.logits_at(&rows, &spans);
            let mut at = 0;
            for t in &targets {
                let n = t.len() * vocab;
                out.push(score_rows(&logits[at..at + n], vocab, t));
                at += n;
            }
        }
        Ok(out)
    }

    fn generate(&mut self, req: &GenRequest) -> Result<GenOutput, EvalError> {
        let max = self.max_len();
        let mut seq = req.prompt.clone();
        let keep = max.saturating_sub(req.max_tokens.min(max / 2)).max(1);
        if seq.len() > keep {
            seq.drain(..seq.len() - keep);
        }
        let vocab = self.config.vocab_size as usize;
        let mut tokens = Vec::new();
        let mut bytes = Vec::new();
        let mut cut: Option<usize> = None;
        while tokens.len() < req.max_tokens && seq.len() < max {
            let last = seq.len() - 1;
            let span = last..last + 1;
            let logits = self.logits_at(std::slice::from_ref(&seq), std::slice::from_ref(&span));
            let next = edge_runtime::argmax(&logits[..vocab]);
            if self.stop_ids.contains(&next) {
                break;
            }
            tokens.push(next);
            seq.push(next);
            bytes.extend_from_slice(&self.token_bytes(next));
            let text = String::from_utf8_lossy(&bytes);
            if let Some(c) = cut_at_stop(&text, &req.stop) {
                cut = Some(c);
                break;
            }
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let text = match cut {
            Some(c) => text[..c].to_string(),
            None => text,
        };
        Ok(GenOutput { text, tokens })
    }
}

/// Per-task item counts and wall time per item, for the summary line.
pub fn summary(report: &llm_eval::Report) -> String {
    let items: usize = report.tasks.values().map(|t| t.n).sum();
    let avg = report
        .average
        .map_or_else(|| "-".to_string(), |a| format!("{a:.2}"));
    format!(
        "evaluated {} on {} tasks ({items} items) in {:.1} s: average {avg}",
        report.model,
        report.tasks.len(),
        report.seconds
    )
}
