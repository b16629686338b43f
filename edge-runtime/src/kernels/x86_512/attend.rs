//! One token's attention for the query heads that share a K/V head, with 512-bit vectors, bit
//! for bit `attend::attend_scalar`. ggml's f16 dot keeps 32 lanes (four accumulators of 8, on
//! AVX2); here they are two accumulators of 16, lanes in the same places, so every lane sees
//! the same FMAs in the same order and the reduction adds the same pairs. The heads of a group
//! share each K and V row's load and conversion, and the scores of 8 positions are reduced
//! together (the same pairs added, in shuffled registers). The softmax is the AVX2 one.

// Index loops over positions and lanes mirror ggml's layout.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::super::ahead::AheadLines;
use super::super::attend::{attend_scalar, scores_per_head, Head};
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

/// Positions ahead that the K rows are prefetched: 4 or 8 KiB ahead in the K/V head's
/// consecutive rows of 128 or 256 bytes.
const AHEAD: usize = 32;

/// Prefetches this head's slice of row `p` of `cache` (a hint: any address is allowed).
#[inline]
#[target_feature(enable = "avx512f")]
fn prefetch_row(cache: &[half::f16], h: &Head, p: usize) {
    let row = cache.as_ptr().wrapping_add(p * h.head_dim).cast::<u8>();
    for l in 0..(2 * h.head_dim).div_ceil(64) {
        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(64 * l).cast());
    }
}

/// ggml's `GGML_F32x8_REDUCE` of 8 positions' four 8-lane accumulators, each position's held
/// as `(acc0 | acc1)` and `(acc2 | acc3)` and given as their sum `x = (acc0 + acc2 | acc1 +
/// acc3)`: per position, the halves of `x` added (ggml's `x0 + x1`), then the halves of that,
/// then two horizontal adds. The same additions in the same pairs as one position at a time,
/// with the positions side by side in the registers. Returns the 8 sums in order.
#[inline]
#[target_feature(enable = "avx512f")]
fn reduce4_x8(x: &[__m512; 8]) -> __m256 {
    // x0 = lo256 + hi256 per position, two positions a register: [x0_a | x0_b].
    let mut y = [_mm512_setzero_ps(); 4];
    for k in 0..4 {
        let (a, b) = (x[2 * k], x[2 * k + 1]);
        y[k] = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b),
        );
    }
    // t0 = lo128 + hi128 of x0, four positions a register.
    let mut t = [_mm512_setzero_ps(); 2];
    for m in 0..2 {
        let (a, b) = (y[2 * m], y[2 * m + 1]);
        t[m] = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b),
            _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b),
        );
    }
    // The first `hadd`: (t0[0] + t0[1], t0[2] + t0[3]) of position k and k + 4 in lane k.
    let s = _mm512_add_ps(
        _mm512_shuffle_ps::<0b10_00_10_00>(t[0], t[1]),
        _mm512_shuffle_ps::<0b11_01_11_01>(t[0], t[1]),
    );
    // The second: position k's sum in element 0 of 128-bit lane k, position k + 4's in 1.
    let r = _mm512_add_ps(
        _mm512_shuffle_ps::<0b10_00_10_00>(s, s),
        _mm512_shuffle_ps::<0b11_01_11_01>(s, s),
    );
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0);
    _mm512_castps512_ps256(_mm512_permutexvar_ps(order, r))
}

#[target_feature(enable = "avx512f,avx2,fma,f16c")]
fn attend_avx512(h: &Head, scores: &mut [f32], out: &mut [f32], ahead: &mut AheadLines) {
    let hd = h.head_dim;
    if !hd.is_multiple_of(32) {
        // The f16 dot's scalar tail (double precision) is rare enough to leave to the reference.
        return attend_scalar(h, scores, out);
    }
    let (heads, per) = (h.heads(), scores_per_head(scores, h));
    // Scores and softmax, up to 4 heads at a time.
    let nz = hd / 16;
    let mut j0 = 0;
    while j0 < heads {
        let g = (heads - j0).min(4);
        let s = &mut scores[j0 * per..(j0 + g) * per];
        macro_rules! probs_for {
            ($($nz:literal)*) => {
                match (nz, g) {
                    $(
                        ($nz, 1) => probs::<$nz, 1>(h, j0, s, per, ahead),
                        ($nz, 2) => probs::<$nz, 2>(h, j0, s, per, ahead),
                        ($nz, 3) => probs::<$nz, 3>(h, j0, s, per, ahead),
                        ($nz, _) => probs::<$nz, 4>(h, j0, s, per, ahead),
                    )*
                    // hd is a multiple of 32 (above) and at most MAX_HEAD_DIM.
                    _ => unreachable!("head dimension {hd}"),
                }
            };
        }
        probs_for!(2 4 6 8 10 12 14 16);
        j0 += g;
    }
    // Probabilities · V, as many heads at a time as keep their accumulators in registers.
    let most = (16 / nz).clamp(1, 4);
    let mut j0 = 0;
    while j0 < heads {
        let g = (heads - j0).min(most);
        let (p, o) = (&scores[j0 * per..], &mut out[j0 * hd..(j0 + g) * hd]);
        // hd is a multiple of 32 (above) and at most MAX_HEAD_DIM; g * nz <= 16 but for nz > 16.
        match (nz, g) {
            (2, 1) => prob_v::<2, 1>(h, p, per, o),
            (2, 2) => prob_v::<2, 2>(h, p, per, o),
            (2, 3) => prob_v::<2, 3>(h, p, per, o),
            (2, _) => prob_v::<2, 4>(h, p, per, o),
            (4, 1) => prob_v::<4, 1>(h, p, per, o),
            (4, 2) => prob_v::<4, 2>(h, p, per, o),
            (4, 3) => prob_v::<4, 3>(h, p, per, o),
            (4, _) => prob_v::<4, 4>(h, p, per, o),
            (6, 1) => prob_v::<6, 1>(h, p, per, o),
            (6, _) => prob_v::<6, 2>(h, p, per, o),
            (8, 1) => prob_v::<8, 1>(h, p, per, o),
            (8, _) => prob_v::<8, 2>(h, p, per, o),
            (10, _) => prob_v::<10, 1>(h, p, per, o),
            (12, _) => prob_v::<12, 1>(h, p, per, o),
            (14, _) => prob_v::<14, 1>(h, p, per, o),
            _ => prob_v::<16, 1>(h, p, per, o),
        }
        j0 += g;
    }
}

/// Heads `j0..j0 + G` (each `NZ` 16-lane vectors wide): their scores against K rows
/// `0..n_kv` (one load and conversion of each row for all of them), then the softmax, leaving
/// each head's probabilities rounded to f16 in its `per` floats of `scores`.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
fn probs<const NZ: usize, const G: usize>(
    h: &Head,
    j0: usize,
    scores: &mut [f32],
    per: usize,
    ahead: &mut AheadLines,
) {
    let (hd, n_kv) = (h.head_dim, h.n_kv);
    let padded = n_kv.div_ceil(8) * 8;
    assert!(hd == 16 * NZ && scores.len() >= G * per && per >= padded);
    // Q rounded to f16, as 16-lane vectors.
    let mut q = [[_mm512_setzero_ps(); NZ]; G];
    for (j, qj) in q.iter_mut().enumerate() {
        let src = &h.q[(j0 + j) * hd..(j0 + j + 1) * hd];
        for (i, qv) in qj.iter_mut().enumerate() {
            // SAFETY: 16i + 16 <= hd = src.len(); unaligned load.
            let v = unsafe { _mm512_loadu_ps(src.as_ptr().add(16 * i)) };
            *qv = _mm512_cvtph_ps(_mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v));
        }
    }
    let scale = _mm256_set1_ps(h.scale);
    let mut max = [_mm256_set1_ps(f32::NEG_INFINITY); G];
    // Per head, 8 positions' (acc0 | acc1) + (acc2 | acc3), reduced together.
    let mut x = [[_mm512_setzero_ps(); 8]; G];
    for p0 in (0..padded).step_by(8) {
        let rows = (n_kv - p0).min(8);
        for b in 0..8 {
            let p = p0 + b;
            if b >= rows {
                // Past the last position: its sum is not kept (the softmax pads with -inf).
                for xj in x.iter_mut() {
                    xj[b] = _mm512_setzero_ps();
                }
                continue;
            }
            prefetch_row(h.k_cache, h, p + AHEAD);
            // The V rows are read in another order (by lane, see `prob_v`): bring them in now.
            prefetch_row(h.v_cache, h, p);
            ahead.one();
            let kr = &h.k_cache[p * h.head_dim..][..hd];
            let mut k = [_mm512_setzero_ps(); NZ];
            for (i, kv) in k.iter_mut().enumerate() {
                *kv = load_f16x16(&kr[16 * i..]);
            }
            // ggml's step of 32 dimensions: acc0..acc3 take 8 each, so (acc0 | acc1) the first
            // 16 and (acc2 | acc3) the next.
            for (xj, qj) in x.iter_mut().zip(&q) {
                let mut acc = [_mm512_setzero_ps(); 2];
                for i in (0..NZ).step_by(2) {
                    acc[0] = _mm512_fmadd_ps(k[i], qj[i], acc[0]);
                    acc[1] = _mm512_fmadd_ps(k[i + 1], qj[i + 1], acc[1]);
                }
                xj[b] = _mm512_add_ps(acc[0], acc[1]);
            }
        }
        // Positions past n_kv count as -inf for the maximum.
        let valid = _mm256_castsi256_ps(_mm256_cmpgt_epi32(
            _mm256_set1_epi32(rows as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        ));
        for j in 0..G {
            let s = _mm256_mul_ps(reduce4_x8(&x[j]), scale);
            // SAFETY: p0 + 8 <= padded <= per, inside head j's part of `scores`.
            unsafe { _mm256_storeu_ps(scores.as_mut_ptr().add(j * per + p0), s) };
            let s = _mm256_blendv_ps(_mm256_set1_ps(f32::NEG_INFINITY), s, valid);
            max[j] = _mm256_max_ps(max[j], s);
        }
    }
    for (j, m) in max.iter().enumerate() {
        let mut v = [0f32; 8];
        // SAFETY: 8 floats; unaligned store.
        unsafe { _mm256_storeu_ps(v.as_mut_ptr(), *m) };
        // The maximum of the same values as the scalar loop's (order does not change it).
        let max = v.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let s = &mut scores[j * per..(j + 1) * per];
        s[n_kv..padded].fill(f32::NEG_INFINITY);
        softmax_f16_probs(s, n_kv, max);
    }
}

/// `out = sum_p probs[p] * V[p]` per head in ggml's f16-dot layout: position `p` goes to lane
/// `p % 32` (FMAs in position order per lane), lanes reduced as `reduce32`. One lane at a time
/// for `G` heads (head `j`'s probabilities at `probs[j * per..]`), their `NZ = hd / 16`
/// accumulators each in registers and each V row loaded and converted once for all of them.
#[inline]
#[target_feature(enable = "avx512f,f16c")]
fn prob_v<const NZ: usize, const G: usize>(h: &Head, probs: &[f32], per: usize, out: &mut [f32]) {
    let hd = h.head_dim;
    assert!(hd == 16 * NZ && out.len() >= G * hd && probs.len() >= (G - 1) * per + h.n_kv);
    let mut lanes = [[[_mm512_setzero_ps(); NZ]; 32]; G];
    for l in 0..32 {
        let mut acc = [[_mm512_setzero_ps(); NZ]; G];
        for p in (l..h.n_kv).step_by(32) {
            let vr = &h.v_cache[p * h.head_dim..][..hd];
            let mut v = [_mm512_setzero_ps(); NZ];
            for i in 0..NZ {
                v[i] = load_f16x16(&vr[16 * i..]);
            }
            for (j, a) in acc.iter_mut().enumerate() {
                let w = _mm512_set1_ps(probs[j * per + p]);
                for (a, &v) in a.iter_mut().zip(&v) {
                    *a = _mm512_fmadd_ps(v, w, *a);
                }
            }
        }
        for (lj, a) in lanes.iter_mut().zip(acc) {
            lj[l] = a;
        }
    }
    for (j, lanes) in lanes.iter().enumerate() {
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
            // SAFETY: j * hd + 16i + 16 <= G * hd <= out.len(); unaligned store.
            unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(j * hd + 16 * i), r) };
        }
    }
}
