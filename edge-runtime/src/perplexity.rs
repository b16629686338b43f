//! Perplexity as llama-perplexity computes it: the token stream is cut into chunks of `n_ctx`
//! (each starting with BOS when the model adds one), every chunk is evaluated from an empty
//! cache, and each token in the second half of a chunk is scored, so that it always has at least
//! `n_ctx / 2` tokens of context.

use crate::error::{Error, Result};
use crate::session::Session;

/// The result of [`perplexity`].
#[derive(Debug, Clone, PartialEq)]
pub struct Perplexity {
    pub ppl: f64,
    /// llama-perplexity's uncertainty estimate of `ppl`.
    pub stderr: f64,
    pub chunks: usize,
    pub scored_tokens: usize,
}

/// Perplexity of `tokens` with chunks of the session's `n_ctx`. `on_chunk(i, running_ppl)` is
/// called after every chunk (for progress output).
pub fn perplexity(
    session: &mut Session,
    tokens: &[u32],
    mut on_chunk: impl FnMut(usize, f64),
) -> Result<Perplexity> {
    let n_ctx = session.n_ctx();
    if n_ctx < 4 {
        return Err(Error::Invalid("perplexity needs n_ctx >= 4".into()));
    }
    let chunks = tokens.len() / n_ctx;
    if chunks == 0 {
        return Err(Error::Invalid(format!(
            "{} tokens are fewer than one chunk of {n_ctx}",
            tokens.len()
        )));
    }
    let model = session.model().clone();
    let vocab = model.config.vocab_size as usize;
    let first = n_ctx / 2;
    let (mut nll, mut nll2, mut count) = (0f64, 0f64, 0usize);
    for c in 0..chunks {
        let mut chunk = tokens[c * n_ctx..(c + 1) * n_ctx].to_vec();
        if model.special.add_bos {
            if let Some(b) = model.special.bos {
                chunk[0] = b;
            }
        }
        let logits = session.eval_all_logits(&chunk)?;
        for j in first..n_ctx - 1 {
            let l = &logits[j * vocab..(j + 1) * vocab];
            let max = l.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let sum: f64 = l
                .iter()
                .map(|&v| (f64::from(v) - f64::from(max)).exp())
                .sum();
            let lp = f64::from(l[tokens[c * n_ctx + j + 1] as usize]) - f64::from(max) - sum.ln();
            nll -= lp;
            nll2 += lp * lp;
            count += 1;
        }
        on_chunk(c, (nll / count as f64).exp());
    }
    let mean = nll / count as f64;
    let ppl = mean.exp();
    let var = (nll2 / count as f64 - mean * mean).max(0.0) / (count as f64 - 1.0).max(1.0);
    Ok(Perplexity {
        ppl,
        stderr: ppl * var.sqrt(),
        chunks,
        scored_tokens: count,
    })
}
