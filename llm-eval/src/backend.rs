//! The one trait every model backend implements: log-likelihoods of continuations and greedy
//! generation, over token ids, plus the tokenizer, and chat replies. `EdgeModel` (GGUF files
//! through edge-runtime) and `OpenAiModel` (an OpenAI-compatible HTTP endpoint, chat only) are
//! in this crate; cloud-train implements it for its burn model.

use llama_spec::chat::Message;

use crate::error::Result;

/// Score `continuation` given `context` (both token ids; `context` starts with BOS when the
/// model uses one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoglikRequest {
    pub context: Vec<u32>,
    pub continuation: Vec<u32>,
}

/// lm-evaluation-harness's `(logprob, is_greedy)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Loglik {
    /// Sum of the log-probabilities of the continuation tokens.
    pub logprob: f64,
    /// Every continuation token is the argmax at its position.
    pub greedy: bool,
}

/// Greedy generation from `prompt`, ending at a stop token, before the first stop string, or
/// after `max_tokens`.
#[derive(Debug, Clone)]
pub struct GenRequest {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub stop: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct GenOutput {
    /// The reply, cut before any stop string.
    pub text: String,
    /// Generated token ids (stop tokens excluded).
    pub tokens: Vec<u32>,
}

pub trait LanguageModel {
    /// A short name for reports (file or directory name).
    fn name(&self) -> String;
    /// Token ids of `text`, with no special tokens added (special-token texts map to their ids).
    fn encode(&self, text: &str) -> Result<Vec<u32>>;
    /// The BOS id prepended to every prompt, when the model uses one.
    fn bos(&self) -> Option<u32>;
    /// The bytes a token stands for (empty for control tokens).
    fn token_bytes(&self, id: u32) -> Vec<u8>;
    /// The model's chat template applied to `messages`, with the assistant header added.
    fn chat_prompt(&self, messages: &[Message]) -> Result<String>;
    /// Longest sequence the model takes (contexts are truncated on the left to fit).
    fn max_len(&self) -> usize;
    /// One result per request, in order. Backends batch as they see fit.
    fn loglikelihood(&mut self, reqs: &[LoglikRequest]) -> Result<Vec<Loglik>>;
    fn generate(&mut self, req: &GenRequest) -> Result<GenOutput>;
    /// A greedy reply to `messages` through the model's chat template, cut before the first
    /// of `stop`: what dialogue tasks and judges use. HTTP endpoints implement only this.
    fn chat(&mut self, messages: &[Message], max_tokens: usize, stop: &[String]) -> Result<String> {
        let prompt = self.encode(&self.chat_prompt(messages)?)?;
        Ok(self
            .generate(&GenRequest {
                prompt,
                max_tokens,
                stop: stop.to_vec(),
            })?
            .text)
    }
}

/// `log p(token)` of each target under each row of logits, and whether it is the row's
/// argmax (ties count as greedy only for the first maximum, as `argmax` does).
pub fn score_rows(logits: &[f32], vocab: usize, targets: &[u32]) -> Loglik {
    let mut logprob = 0.0f64;
    let mut greedy = true;
    for (row, &t) in logits.chunks_exact(vocab).zip(targets) {
        let (mut best, mut best_i) = (f32::NEG_INFINITY, 0usize);
        let mut max = f64::NEG_INFINITY;
        for (i, &v) in row.iter().enumerate() {
            if v > best {
                best = v;
                best_i = i;
            }
            max = max.max(f64::from(v));
        }
        let sum: f64 = row.iter().map(|&v| (f64::from(v) - max).exp()).sum();
        logprob += f64::from(row[t as usize]) - max - sum.ln();
        greedy &= best_i == t as usize;
    }
    Loglik { logprob, greedy }
}

/// lm-evaluation-harness's `_encode_pair`: trailing spaces of the context move to the
/// continuation; the continuation's ids are those of `context + continuation` after the
/// context's (so a merge across the boundary is scored the way the model would see it).
pub fn encode_pair(
    model: &dyn LanguageModel,
    context: &str,
    continuation: &str,
) -> Result<LoglikRequest> {
    let trimmed = context.trim_end_matches(crate::metrics::py_isspace);
    let whole = format!("{context}{continuation}");
    let mut ctx: Vec<u32> = model.bos().into_iter().collect();
    ctx.extend(model.encode(trimmed)?);
    let mut all: Vec<u32> = model.bos().into_iter().collect();
    all.extend(model.encode(&whole)?);
    let mut cont = all[ctx.len().min(all.len())..].to_vec();
    if cont.is_empty() {
        // The continuation merged entirely into the context's last token: score that token.
        cont = all[all.len().saturating_sub(1)..].to_vec();
        ctx = all[..all.len().saturating_sub(1)].to_vec();
    }
    Ok(LoglikRequest {
        context: ctx,
        continuation: cont,
    })
}

/// Left-truncate a request to `max_len` tokens (context first), as lm-eval does.
pub fn fit(req: &LoglikRequest, max_len: usize) -> LoglikRequest {
    let total = req.context.len() + req.continuation.len();
    if total <= max_len {
        return req.clone();
    }
    let drop = (total - max_len).min(req.context.len().saturating_sub(1));
    LoglikRequest {
        context: req.context[drop..].to_vec(),
        continuation: req.continuation.clone(),
    }
}

/// Cut `text` before the earliest of `stop` (what both backends promise).
pub fn cut_at_stop(text: &str, stop: &[String]) -> Option<usize> {
    stop.iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}
