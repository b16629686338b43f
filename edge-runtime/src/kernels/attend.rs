//! One (token, head) pair of attention: its inputs and the scalar definition that the SIMD
//! versions reproduce bit for bit.

use half::f16;

use super::ggml_math::{dot_f16, reduce32, softmax_exp_sum};

/// Maximum head dimension (Llama uses 64 or 128); checked at model load.
pub const MAX_HEAD_DIM: usize = 256;

/// One (token, head) pair's inputs.
pub(crate) struct Head<'a> {
    pub q: &'a [f32],
    pub k_cache: &'a [f16],
    pub v_cache: &'a [f16],
    /// Row stride of the caches (`n_kv_head * head_dim`) and this head's offset in a row.
    pub stride: usize,
    pub offset: usize,
    pub n_kv: usize,
    pub scale: f32,
}

/// The scalar reference for one (token, head).
pub(crate) fn attend_scalar(h: &Head, scores: &mut [f32], out: &mut [f32]) {
    let hd = h.q.len();
    let mut q16 = [0f32; MAX_HEAD_DIM];
    for (d, &v) in q16[..hd].iter_mut().zip(h.q) {
        *d = f16::from_f32(v).to_f32();
    }
    let padded = h.n_kv.div_ceil(8) * 8;
    scores[h.n_kv..padded].fill(f32::NEG_INFINITY);
    let mut max = f32::NEG_INFINITY;
    for (p, s) in scores[..h.n_kv].iter_mut().enumerate() {
        let kr = &h.k_cache[p * h.stride + h.offset..][..hd];
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
        let vr = &h.v_cache[p * h.stride + h.offset..][..hd];
        for (acc, v) in acc.iter_mut().zip(vr) {
            acc[p % 32] = v.to_f32().mul_add(w, acc[p % 32]);
        }
    }
    for (o, acc) in out.iter_mut().zip(&acc) {
        *o = reduce32(acc);
    }
}
