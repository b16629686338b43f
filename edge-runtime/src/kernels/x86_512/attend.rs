//! One (token, head) of attention with 512-bit vectors, bit for bit `attend::attend_scalar`.
//! ggml's f16 dot keeps 32 lanes (four accumulators of 8, on AVX2); here they are two
//! accumulators of 16, lanes in the same places, so every lane sees the same FMAs in the same
//! order and the reduction adds the same pairs. The softmax is the AVX2 one.

// Index loops over positions and lanes mirror ggml's layout.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::super::ahead::AheadLines;
use super::super::attend::{attend_scalar, Head, MAX_HEAD_DIM};
use super::super::x86::softmax_f16_probs;

/// See the module docs; `ahead`: lines of the next weights, one prefetched per position and
/// pass.
pub(crate) fn attend(h: &Head, scores: &mut [f32], out: &mut [f32], ahead: &mut AheadLines) {
    // SAFETY: only called where `Isa::detect` found AVX-512F (and with it AVX2, FMA, F16C).
    unsafe { attend_avx512(h, scores, out, ahead) }
}

/// 16 f16 at the start of `p`, as floats.
#[inline]
#[target_feature(enable = "avx512f")]
fn load_f16x16(p: &[half::f16]) -> __m512 {
    assert!(p.len() >= 16);
    // SAFETY: 16 readable f16 values (asserted); unaligned load.
    unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.as_ptr().cast())) }
}

/// Positions ahead that the K and V rows are prefetched: a head's slice of a cache row is
/// 128 or 256 bytes every `n_kv_head * head_dim * 2`. With this and the 512-bit arithmetic,
/// attention took 9.1 % of 1B Q4_K_M decode over tg1024 on one thread against 11.6 % (AVX2),
/// and the tg1024 speed rose 1-3 % (alternated runs; 16 or 64 ahead did no better).
const AHEAD: usize = 32;

/// Prefetches this head's slice of row `p` of `cache` (a hint: any address is allowed).
#[inline]
#[target_feature(enable = "avx512f")]
fn prefetch_row(cache: &[half::f16], h: &Head, p: usize) {
    let row = cache
        .as_ptr()
        .wrapping_add(p * h.stride + h.offset)
        .cast::<u8>();
    for l in 0..(2 * h.q.len()).div_ceil(64) {
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(64 * l).cast());
    }
}

/// `GGML_F32x8_REDUCE` of ggml's four 8-lane accumulators held as `(acc0 | acc1)` and
/// `(acc2 | acc3)`.
#[inline]
#[target_feature(enable = "avx512f,avx2")]
fn reduce4(a: [__m512; 2]) -> f32 {
    // (acc0 + acc2 | acc1 + acc3), then their halves added: ggml's x0 + x1.
    let x = _mm512_add_ps(a[0], a[1]);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x)));
    let x0 = _mm256_add_ps(_mm512_castps512_ps256(x), hi);
    let t0 = _mm_add_ps(_mm256_castps256_ps128(x0), _mm256_extractf128_ps(x0, 1));
    let t1 = _mm_hadd_ps(t0, t0);
    _mm_cvtss_f32(_mm_hadd_ps(t1, t1))
}

#[target_feature(enable = "avx512f,avx2,fma,f16c")]
fn attend_avx512(h: &Head, scores: &mut [f32], out: &mut [f32], ahead: &mut AheadLines) {
    let hd = h.q.len();
    if !hd.is_multiple_of(32) {
        // The f16 dot's scalar tail (double precision) is rare enough to leave to the reference.
        return attend_scalar(h, scores, out);
    }
    let nz = hd / 16;
    // Q rounded to f16, as 16-lane vectors.
    let mut q = [_mm512_setzero_ps(); MAX_HEAD_DIM / 16];
    for (i, qv) in q[..nz].iter_mut().enumerate() {
        // SAFETY: 16i + 16 <= hd = q.len(); unaligned load.
        let v = unsafe { _mm512_loadu_ps(h.q.as_ptr().add(16 * i)) };
        *qv = _mm512_cvtph_ps(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v));
    }
    let n_kv = h.n_kv;
    let padded = n_kv.div_ceil(8) * 8;
    scores[n_kv..padded].fill(f32::NEG_INFINITY);
    let mut max = f32::NEG_INFINITY;
    for p in 0..n_kv {
        prefetch_row(h.k_cache, h, p + AHEAD);
        ahead.one();
        let kr = &h.k_cache[p * h.stride + h.offset..][..hd];
        // ggml's step of 32 dimensions: acc0..acc3 take 8 each, so (acc0 | acc1) the first 16.
        let mut acc = [_mm512_setzero_ps(); 2];
        for i in (0..nz).step_by(2) {
            for (j, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(load_f16x16(&kr[16 * (i + j)..]), q[i + j], *a);
            }
        }
        let s = reduce4(acc) * h.scale;
        scores[p] = s;
        max = max.max(s);
    }
    softmax_f16_probs(scores, n_kv, max);
    // hd is a multiple of 32 (above) and at most MAX_HEAD_DIM.
    match nz {
        2 => prob_v::<2>(h, scores, out, ahead),
        4 => prob_v::<4>(h, scores, out, ahead),
        6 => prob_v::<6>(h, scores, out, ahead),
        8 => prob_v::<8>(h, scores, out, ahead),
        10 => prob_v::<10>(h, scores, out, ahead),
        12 => prob_v::<12>(h, scores, out, ahead),
        14 => prob_v::<14>(h, scores, out, ahead),
        _ => prob_v::<16>(h, scores, out, ahead),
    }
}

/// `out = sum_p probs[p] * V[p]` in ggml's f16-dot layout: position `p` goes to lane `p % 32`
/// (FMAs in position order per lane), lanes reduced as `reduce32`. One lane at a time, its
/// `NZ = hd / 16` accumulators in registers.
#[inline]
#[target_feature(enable = "avx512f,f16c")]
fn prob_v<const NZ: usize>(h: &Head, probs: &[f32], out: &mut [f32], ahead: &mut AheadLines) {
    let hd = h.q.len();
    assert!(hd == 16 * NZ && out.len() >= hd && probs.len() >= h.n_kv);
    let mut lanes = [[_mm512_setzero_ps(); NZ]; 32];
    // Positions in order (the rows' stride is one the hardware prefetcher follows), each
    // lane's accumulators from and back to `lanes`.
    for p in 0..h.n_kv {
        prefetch_row(h.v_cache, h, p + AHEAD);
        ahead.one();
        let w = _mm512_set1_ps(probs[p]);
        let vr = &h.v_cache[p * h.stride + h.offset..][..hd];
        for (i, a) in lanes[p % 32].iter_mut().enumerate() {
            *a = _mm512_fmadd_ps(load_f16x16(&vr[16 * i..]), w, *a);
        }
    }
    for i in 0..NZ {
        let mut y = [_mm512_setzero_ps(); 8];
        for (l, y) in y.iter_mut().enumerate() {
            *y = _mm512_add_ps(
                _mm512_add_ps(lanes[l][i], lanes[16 + l][i]),
                _mm512_add_ps(lanes[8 + l][i], lanes[24 + l][i]),
            );
        }
        let t = [
            _mm512_add_ps(y[0], y[4]),
            _mm512_add_ps(y[1], y[5]),
            _mm512_add_ps(y[2], y[6]),
            _mm512_add_ps(y[3], y[7]),
        ];
        let r = _mm512_add_ps(_mm512_add_ps(t[0], t[1]), _mm512_add_ps(t[2], t[3]));
        // SAFETY: 16i + 16 <= hd <= out.len(); unaligned store.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(16 * i), r) };
    }
}
