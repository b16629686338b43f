//! Cross-entropy over the vocabulary with its gradient written out, not taped: for a chunk of
//! rows, `dlogits = (softmax(logits) - onehot(target)) * keep / n`, then `dW = dlogits^T h` and
//! `dh = dlogits W` as two matmuls. burn's autodiff through `log_softmax` would keep the logits
//! and run about ten more full passes over the `rows x vocab` matrix.

use burn::prelude::*;
use burn::tensor::{DType, IndexingUpdateOp};
use rayon::prelude::*;

use crate::model::scalar;

fn f32_of<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    if t.dtype() == DType::F32 {
        t
    } else {
        t.cast(DType::F32)
    }
}

/// What one chunk contributes.
pub struct ChunkGrad {
    /// Sum over kept rows of `-log p(target)`.
    pub nll_sum: f64,
    /// `[vocab, hidden]`: this chunk's part of the head weight's gradient.
    pub d_weight: Tensor<2>,
    /// `[rows, hidden]`: gradient with respect to the normed hidden states.
    pub d_hidden: Tensor<2>,
}

/// How the rows of a chunk are weighted in the loss.
pub enum RowWeights {
    /// Every kept row (target >= 0) by `1 / denom`: the mean cross-entropy.
    Mean(f64),
    /// One weight per row (`[rows]`, zero for rows left out): `sum(w * nll)`.
    Each(Box<Tensor<1>>),
}

/// `-log p(target)` of every row (0 where the target is negative), without gradients.
///
/// # Shapes
/// - h: `[rows, hidden]`, weight: `[vocab, hidden]`, targets: `[rows]`; returns `[rows]`
pub fn nll_rows(h: Tensor<2>, weight: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let h = f32_of(h.inner());
    let weight = f32_of(weight.inner());
    let targets = targets.inner();
    let n = targets.dims()[0];
    let logits = h.matmul(weight.transpose());
    let max = logits.clone().max_dim(1);
    let sum = (logits.clone() - max.clone()).exp().sum_dim(1);
    let keep = targets
        .clone()
        .greater_equal_elem(0)
        .float()
        .reshape([n, 1]);
    let picked = logits.gather(1, targets.clamp_min(0).reshape([n, 1]));
    ((max + sum.log() - picked) * keep).reshape([n])
}

/// Loss and gradients of `sum(nll(h W^T, targets)) / denom` for one chunk of rows.
/// Rows whose target is negative are left out. Works on tensors without autodiff, in f32.
///
/// # Shapes
/// - h: `[rows, hidden]`, weight: `[vocab, hidden]`, targets: `[rows]`
pub fn chunk(h: Tensor<2>, weight: Tensor<2>, targets: Tensor<1, Int>, denom: f64) -> ChunkGrad {
    chunk_weighted(h, weight, targets, RowWeights::Mean(denom))
}

/// [`chunk`] with the rows weighted as `weights` says (`nll_sum` is then `sum(w * nll)`).
pub fn chunk_weighted(
    h: Tensor<2>,
    weight: Tensor<2>,
    targets: Tensor<1, Int>,
    weights: RowWeights,
) -> ChunkGrad {
    let h = f32_of(h.inner());
    let weight = f32_of(weight.inner());
    let targets = targets.inner();
    let n = targets.dims()[0];
    let logits = h.clone().matmul(weight.clone().transpose()); // [rows, vocab]
                                                               // The element-wise part runs one op at a time on one core in burn's CPU backend; split the
                                                               // rows so that every core works (the matmuls around it are multi-threaded already).
    let parts = rayon::current_num_threads().clamp(1, n.max(1));
    let spans: Vec<(usize, usize)> = (0..parts)
        .map(|i| (i * n / parts, (i + 1) * n / parts - i * n / parts))
        .filter(|&(_, len)| len > 0)
        .collect();
    let pieces: Vec<(Tensor<2>, Tensor<1>)> = spans
        .par_iter()
        .map(|&(start, len)| {
            let w = match &weights {
                RowWeights::Mean(d) => Err(*d),
                RowWeights::Each(w) => Ok(w.as_ref().clone().inner().narrow(0, start, len)),
            };
            softmax_grad(
                logits.clone().narrow(0, start, len),
                targets.clone().narrow(0, start, len),
                w,
            )
        })
        .collect();
    let (d_logits, nll): (Vec<_>, Vec<_>) = pieces.into_iter().unzip();
    let d_logits = Tensor::cat(d_logits, 0);
    let nll_sum = scalar(Tensor::cat(nll, 0).sum());
    let d_weight = d_logits.clone().transpose().matmul(h);
    let d_hidden = d_logits.matmul(weight);
    ChunkGrad {
        nll_sum,
        d_weight,
        d_hidden,
    }
}

/// `(dlogits, weighted sum of nll)` for a block of rows; `weights` is `Ok(one per row)` or
/// `Err(denom)` for the mean.
///
/// # Shapes
/// - logits: `[rows, vocab]`, targets: `[rows]`; returns `[rows, vocab]` and `[1]`
fn softmax_grad(
    logits: Tensor<2>,
    targets: Tensor<1, Int>,
    weights: Result<Tensor<1>, f64>,
) -> (Tensor<2>, Tensor<1>) {
    let n = targets.dims()[0];
    let max = logits.clone().max_dim(1); // [rows, 1]
    let exp = (logits.clone() - max.clone()).exp();
    let sum = exp.clone().sum_dim(1); // [rows, 1]
    let keep = targets
        .clone()
        .greater_equal_elem(0)
        .float()
        .reshape([n, 1]);
    let safe = targets.clamp_min(0).reshape([n, 1]);
    // nll = max + log(sum) - logit[target], for kept rows.
    let picked = logits.gather(1, safe.clone());
    let rows = (max + sum.clone().log() - picked) * keep.clone();
    // a = the weight of each row: keep / denom, or the given weights (zero where not kept).
    // A Mean chunk reports the plain sum of nll (the caller divides); Each reports sum(w * nll).
    let (a, nll) = match weights {
        Err(denom) => (keep.div_scalar(denom), rows.sum()),
        Ok(w) => {
            let a = f32_of(w).reshape([n, 1]) * keep;
            (a.clone(), (rows * a).sum())
        }
    };
    // dlogits = softmax * a - onehot(target) * a.
    let d_logits = (exp * (a.clone() / sum)).scatter(1, safe, a.neg(), IndexingUpdateOp::Add);
    (d_logits, nll)
}
