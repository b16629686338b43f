//! One token's attention for the query heads that share a K/V head: their inputs and the scalar
//! definition that the SIMD versions reproduce bit for bit.

use half::f16;

use super::ggml_math::{dot_f16, reduce32, softmax_exp_sum};

/// Maximum head dimension (Llama uses 64 or 128); checked at model load.
pub const MAX_HEAD_DIM: usize = 256;

/// The inputs of one token's query heads that share one K/V head (grouped-query attention):
/// one head or several.
pub(crate) struct Head<'a> {
    /// `[heads, head_dim]`, RoPE applied.
    pub q: &'a [f32],
    pub head_dim: usize,
    /// The K/V head's rows, `[n_ctx, head_dim]`: position `p` at `p * head_dim`.
    pub k_cache: &'a [f16],
    pub v_cache: &'a [f16],
    pub n_kv: usize,
    pub scale: f32,
}

impl<'a> Head<'a> {
    pub fn heads(&self) -> usize {
        self.q.len() / self.head_dim
    }

    /// Query head `j` alone.
    pub fn one(&self, j: usize) -> Head<'a> {
        let hd = self.head_dim;
        Head {
            q: &self.q[j * hd..(j + 1) * hd],
            ..*self
        }
    }
}

/// Scores per head in a scratch of `scores.len()` floats for `heads` heads.
pub(crate) fn scores_per_head(scores: &[f32], h: &Head) -> usize {
    let per = scores.len() / h.heads();
    assert!(per >= h.n_kv.div_ceil(8) * 8, "scratch for the scores");
    per
}

/// The scalar reference, head by head: `out` is `[heads, head_dim]`, `scores` scratch for
/// every head (see `attention::scratch_per_thread`).
pub(crate) fn attend_scalar(h: &Head, scores: &mut [f32], out: &mut [f32]) {
    let (hd, per) = (h.head_dim, scores_per_head(scores, h));
    for j in 0..h.heads() {
        attend_one(
            &h.one(j),
            &mut scores[j * per..(j + 1) * per],
            &mut out[j * hd..(j + 1) * hd],
        );
    }
}

/// One query head.
fn attend_one(h: &Head, scores: &mut [f32], out: &mut [f32]) {
    let hd = h.head_dim;
    let mut q16 = [0f32; MAX_HEAD_DIM];
    for (d, &v) in q16[..hd].iter_mut().zip(h.q) {
        *d = f16::from_f32(v).to_f32();
    }
    let padded = h.n_kv.div_ceil(8) * 8;
    scores[h.n_kv..padded].fill(f32::NEG_INFINITY);
    let mut max = f32::NEG_INFINITY;
    for (p, s) in scores[..h.n_kv].iter_mut().enumerate() {
        let kr = &h.k_cache[p * h.head_dim..][..hd];
        *s = dot_f16(kr, &q16[..hd]) * h.scale;
        max = max.max(*s);
    }
    let sum = softmax_exp_sum(&mut scores[..padded], max);
    let inv = (1.0 / sum) as f32;
    let probs = &mut scores[..h.n_kv];
    for s in probs.iter_mut() {
        *s = f16::from_f32(*s * inv).to_f32();
    }
    // Probabilities · V as ggml's f16 dot over positions: lane p % 32 per output dimension.
    let mut acc = [[0f32; 32]; MAX_HEAD_DIM];
    for (p, &w) in probs.iter().enumerate() {
        let vr = &h.v_cache[p * h.head_dim..][..hd];
        for (acc, v) in acc.iter_mut().zip(vr) {
            acc[p % 32] = v.to_f32().mul_add(w, acc[p % 32]);
        }
    }
    for (o, acc) in out.iter_mut().zip(&acc) {
        *o = reduce32(acc);
    }
}
