//! Speculative decoding: cheap guesses of the next few tokens, checked by the model in one
//! forward pass over all of them. A decode step reads every weight once whether it scores one
//! token or eight, so each accepted guess is a token for little more than free.
//!
//! The check samples every position exactly as plain decoding would (same logits, same
//! history, one sampler call per emitted token) and stops at the first position where the
//! model's choice differs from the guess, keeping the model's choice. The text is therefore
//! the one plain decoding gives, for greedy and for seeded sampling alike; only the time
//! changes.

use crate::error::{Error, Result};
use crate::model::Model;

/// Where draft tokens come from (see [`GenerateOptions::speculation`](crate::GenerateOptions)).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Speculation {
    /// Plain decoding: one token per forward pass.
    #[default]
    None,
    /// Prompt lookup: the tokens that followed the latest earlier occurrence of the context's
    /// last `n` tokens, for `n` from `max_ngram` down to `min_ngram`. Needs no second model;
    /// pays off where the reply repeats its context (quoting, rewriting, summaries, code).
    PromptLookup {
        min_ngram: usize,
        max_ngram: usize,
        max_draft: usize,
    },
    /// A smaller model with the same vocabulary ([`Session::attach_draft_model`](crate::Session::attach_draft_model)) guesses
    /// greedily, up to `max_draft` tokens, stopping where its top probability falls below
    /// `min_p`.
    DraftModel { max_draft: usize, min_p: f32 },
}

impl Speculation {
    /// Prompt lookup with the usual settings (n-grams of 1 to 3 tokens, up to 10 guessed).
    pub fn prompt_lookup() -> Self {
        Self::PromptLookup {
            min_ngram: 2,
            max_ngram: 3,
            max_draft: 10,
        }
    }

    /// Draft-model speculation with the usual settings (up to 6 tokens, while the draft's top
    /// probability is at least 0.5).
    pub fn draft_model() -> Self {
        Self::DraftModel {
            max_draft: 6,
            min_p: 0.5,
        }
    }

    /// Most tokens guessed per step (0 for plain decoding).
    pub fn max_draft(&self) -> usize {
        match *self {
            Self::None => 0,
            Self::PromptLookup { max_draft, .. } | Self::DraftModel { max_draft, .. } => max_draft,
        }
    }
}

/// Appends to `out` up to `max_draft` tokens that followed the latest earlier occurrence of
/// the last `n` tokens of `seq`, trying the longest `n` first.
pub(crate) fn lookup_draft(
    seq: &[u32],
    min_ngram: usize,
    max_ngram: usize,
    max_draft: usize,
    out: &mut Vec<u32>,
) {
    let start = out.len();
    for n in (min_ngram.max(1)..=max_ngram).rev() {
        if seq.len() <= n {
            continue;
        }
        let pattern = &seq[seq.len() - n..];
        // Latest occurrence first: recent text predicts the next tokens best. Every start
        // below `seq.len() - n` has at least one token after it.
        if let Some(i) = (0..seq.len() - n)
            .rev()
            .find(|&i| &seq[i..i + n] == pattern)
        {
            let from = i + n;
            out.extend_from_slice(&seq[from..(from + max_draft).min(seq.len())]);
            return;
        }
    }
    debug_assert_eq!(out.len(), start);
}

/// The index and softmax probability of the largest logit.
pub(crate) fn top_probability(logits: &[f32]) -> (u32, f32) {
    let best = crate::sampler::argmax(logits);
    let max = logits[best as usize];
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    (best, 1.0 / sum)
}

/// Check that `draft` can guess for `target`: the same vocabulary, token by token.
pub(crate) fn check_vocabularies(target: &Model, draft: &Model) -> Result<()> {
    let (nt, nd) = (target.config.vocab_size, draft.config.vocab_size);
    let differs = |why: String| {
        Error::Invalid(format!(
            "draft model {} cannot guess for {}: {why}",
            draft.path().display(),
            target.path().display()
        ))
    };
    if nt != nd {
        return Err(differs(format!(
            "its vocabulary has {nd} tokens, the model's {nt}"
        )));
    }
    if let Some(id) = (0..nt).find(|&id| target.token_bytes(id) != draft.token_bytes(id)) {
        return Err(differs(format!(
            "token {id} is {:?} in the draft, {:?} in the model",
            String::from_utf8_lossy(draft.token_bytes(id)),
            String::from_utf8_lossy(target.token_bytes(id))
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(seq: &[u32], max_draft: usize) -> Vec<u32> {
        let mut out = Vec::new();
        lookup_draft(seq, 1, 3, max_draft, &mut out);
        out
    }

    #[test]
    fn lookup_continues_the_latest_longest_match() {
        // "1 2 3" occurs at 0 and at 5; the last three tokens are "1 2 3" again (at 10).
        let seq = [1, 2, 3, 9, 9, 1, 2, 3, 7, 8, 1, 2, 3];
        assert_eq!(lookup(&seq, 4), [7, 8, 1, 2]);
        assert_eq!(lookup(&seq, 1), [7]);
        // Only a 1-gram matches: "5" at 1 is followed by 6.
        assert_eq!(lookup(&[4, 5, 6, 7, 5], 3), [6, 7, 5]);
        // A 2-gram beats a later 1-gram: "8 5" at 0, "5" alone later at 3.
        assert_eq!(lookup(&[8, 5, 1, 5, 2, 8, 5], 1), [1]);
    }

    #[test]
    fn lookup_guesses_nothing_without_a_match() {
        assert!(lookup(&[1, 2, 3, 4], 5).is_empty());
        assert!(lookup(&[1], 5).is_empty());
        assert!(lookup(&[], 5).is_empty());
    }

    #[test]
    fn top_probability_is_the_softmax_maximum() {
        let (id, p) = top_probability(&[0.0, (3.0f32).ln(), 0.0]);
        assert_eq!(id, 1);
        // e^ln3 / (1 + 3 + 1) = 0.6
        assert!((p - 0.6).abs() < 1e-6, "{p}");
    }
}
