//! Mean negative log-likelihood and perplexity of a token stream, the way a transformers user
//! would compute it: the stream is cut into consecutive, non-overlapping windows of `seq_len`
//! tokens (a last window shorter than 2 tokens is dropped); in each window, every token after
//! the first is predicted from the ones before it; the mean is over all predicted tokens.

use burn::prelude::*;

use crate::model::{scalar, Llama};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub windows: usize,
    /// Tokens predicted (each window contributes its length - 1).
    pub predicted: usize,
    pub mean_nll: f64,
    pub perplexity: f64,
}

/// Score `ids` with `model` in windows of `seq_len`, `batch` windows per forward pass.
/// `progress(done, total)` is called after each batch (counts in windows).
pub fn score(
    model: &Llama,
    ids: &[u32],
    seq_len: usize,
    batch: usize,
    device: &Device,
    mut progress: impl FnMut(usize, usize),
) -> Score {
    let seq_len = seq_len.max(2);
    let windows: Vec<&[u32]> = ids.chunks(seq_len).filter(|w| w.len() >= 2).collect();
    let mut nll_sum = 0f64;
    let mut predicted = 0usize;
    let mut done = 0usize;
    // Full windows go in batches; a shorter last window goes alone.
    let (full, short): (Vec<&[u32]>, Vec<&[u32]>) =
        windows.iter().partition(|w| w.len() == seq_len);
    for group in full.chunks(batch.max(1)).chain(short.chunks(1)) {
        let len = group[0].len();
        let flat: Vec<i64> = group
            .iter()
            .flat_map(|w| w.iter().map(|&t| i64::from(t)))
            .collect();
        let t = Tensor::<2, Int>::from_data(TensorData::new(flat, [group.len(), len]), device);
        let mean = scalar(model.loss(t));
        let n = group.len() * (len - 1);
        nll_sum += mean * n as f64;
        predicted += n;
        done += group.len();
        progress(done, windows.len());
    }
    let mean_nll = nll_sum / predicted.max(1) as f64;
    Score {
        windows: windows.len(),
        predicted,
        mean_nll,
        perplexity: mean_nll.exp(),
    }
}
