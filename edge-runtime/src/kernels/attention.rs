//! Causal multi-head attention with grouped K/V heads over the f16 KV cache, parallel over
//! tokens and K/V heads.
//!
//! Numerics are those of llama.cpp's CPU graph without flash attention: Q rounded to f16 and
//! dotted with the f16 K rows (`ggml_vec_dot_f16`: 32 FMA lanes, then ggml's reduction), the
//! softmax of ggml (vector `expf`, 8-lane sums into a double), probabilities rounded to f16 and
//! multiplied with V the same way. llama.cpp's cache views span more cells than the current
//! position; masked cells contribute exact zeros, so only the lane layout matters.

use half::f16;

pub use super::attend::MAX_HEAD_DIM;
use super::attend::{attend_scalar, Head};
use super::pool::{split, SyncPtr, ThreadPool, CHUNKS_PER_THREAD};
use super::Isa;

pub struct Attn<'a> {
    /// `[n_tokens, n_head * head_dim]`, RoPE applied.
    pub q: &'a [f32],
    /// `[n_kv_head, n_ctx, head_dim]`, positions `0..pos0 + n_tokens` filled.
    pub k_cache: &'a [f16],
    pub v_cache: &'a [f16],
    pub n_tokens: usize,
    pub pos0: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub n_ctx: usize,
}

/// Scratch floats one thread needs for `n_ctx` positions: the scores of the query heads that
/// share one K/V head.
pub fn scratch_per_thread(n_ctx: usize, n_head: usize, n_kv_head: usize) -> usize {
    (n_head / n_kv_head.max(1)).max(1) * (n_ctx + 8)
}

/// Token `t` (at position `pos0 + t`) attends to positions `0..=pos0 + t`. `scores` needs
/// `n_threads * scratch_per_thread(..)` floats; `out` is `[n_tokens, n_head * head_dim]`.
///
/// A job is one token's query heads that share a K/V head, so that each K/V row is read and
/// converted once for all of them; where that would leave fewer than two jobs per thread (3
/// K/V heads on 2 threads), the heads are split over more jobs.
pub fn attention(pool: &ThreadPool, isa: &Isa, a: &Attn, scores: &mut [f32], out: &mut [f32]) {
    let hd = a.head_dim;
    assert!(hd <= MAX_HEAD_DIM && hd.is_multiple_of(8));
    let qd = a.n_head * hd;
    let kvd = a.n_kv_head * hd;
    let group = a.n_head / a.n_kv_head;
    let per = scratch_per_thread(a.n_ctx, a.n_head, a.n_kv_head);
    assert!(scores.len() >= pool.n_threads() * per);
    assert!(out.len() >= a.n_tokens * qd && a.q.len() >= a.n_tokens * qd);
    assert!(a.pos0 + a.n_tokens <= a.n_ctx);
    assert!(a.k_cache.len() >= a.n_ctx * kvd && a.v_cache.len() >= a.n_ctx * kvd);
    // Heads per job: the whole group, or the largest divisor of it that gives every thread
    // two jobs.
    let kv_jobs = a.n_tokens * a.n_kv_head;
    let heads = (1..=group)
        .rev()
        .find(|&g| group.is_multiple_of(g) && kv_jobs * (group / g) >= 2 * pool.n_threads())
        .unwrap_or(1);
    let scale = 1.0 / (hd as f32).sqrt();
    let out = SyncPtr(out.as_mut_ptr());
    let scores_all = SyncPtr(scores.as_mut_ptr());
    let isa = *isa;
    let jobs = kv_jobs * (group / heads);
    let chunks = jobs.min(pool.n_threads() * CHUNKS_PER_THREAD);
    pool.for_chunks(chunks, &|tid, c| {
        // SAFETY: each thread owns its own slice of the scores buffer (size asserted), and runs
        // one chunk at a time.
        let scores = unsafe { scores_all.slice(tid * per, per) };
        let mut ahead = pool.take_ahead(tid);
        for job in split(jobs, chunks, c) {
            // Heads `h0..h0 + heads` of token `t`, all on K/V head `h0 / group`.
            let (t, h0) = (job / (a.n_head / heads), job % (a.n_head / heads) * heads);
            // Where K/V head `h0 / group`'s rows start in the caches.
            let kv_at = (h0 / group) * a.n_ctx * hd;
            let h = Head {
                q: &a.q[t * qd + h0 * hd..t * qd + (h0 + heads) * hd],
                head_dim: hd,
                k_cache: &a.k_cache[kv_at..][..a.n_ctx * hd],
                v_cache: &a.v_cache[kv_at..][..a.n_ctx * hd],
                n_kv: a.pos0 + t + 1,
                scale,
            };
            // SAFETY: (token, head) pairs are disjoint across threads; in bounds as asserted.
            let o = unsafe { out.slice(t * qd + h0 * hd, heads * hd) };
            #[cfg(target_arch = "x86_64")]
            if isa.avx512 {
                super::x86_512::attend(&h, scores, o, &mut ahead);
                continue;
            }
            #[cfg(target_arch = "x86_64")]
            if isa.avx2 {
                super::x86::attend(&h, scores, o, &mut ahead);
                continue;
            }
            let _ = isa;
            attend_scalar(&h, scores, o);
        }
        pool.keep_ahead(tid, &ahead);
    });
}
