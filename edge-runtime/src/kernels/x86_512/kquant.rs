//! The K-quants (Q4_K, Q5_K, Q6_K: 256-element super-blocks) for 16 rows at once.

// Index loops over the 4 transposed vectors mirror the block layout.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::super::{BlockQ8K, ROWS16 as ROWS};
use super::base::*;

/// Each 32-bit lane's bytes 0 and 1 (`lo`) or 2 and 3 (`hi`), widened to two i16.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) fn byte_pairs(v: __m512i, hi: bool) -> __m512i {
    // Byte indexes inside each 128-bit lane (the same in all four); -1 gives zero.
    let o = if hi { 2 } else { 0 };
    #[rustfmt::skip]
    let ctl = _mm512_broadcast_i32x4(_mm_setr_epi8(
        o, -1, 1 + o, -1, 4 + o, -1, 5 + o, -1, 8 + o, -1, 9 + o, -1, 12 + o, -1, 13 + o, -1,
    ));
    _mm512_shuffle_epi8(v, ctl)
}

/// Q4_K in llama.cpp's repacked arithmetic (`scalar::dot_q4_k_seq`): per super-block and row
/// the exact `sum_j sc_j * dot_j` and `sum_j mn_j * bsum_j`, each folded in with one FMA.
/// Nibbles are unsigned, so `vpdpbusd` needs no correction; the 6-bit scales and mins are
/// unpacked for 16 rows at once from the transposed scale bytes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) fn q4_k_rows<const N: usize, const PACKED: bool>(
    w: &[u8],
    rb: usize,
    acts: [&[BlockQ8K]; N],
) -> [__m512; N] {
    let nb = rb / 144;
    assert!(rb == nb * 144 && w.len() >= ROWS * rb, "16 whole rows");
    assert!(acts.iter().all(|a| a.len() >= nb), "activations per row");
    let m4 = _mm512_set1_epi8(0x0f);
    let mut acc = [_mm512_setzero_ps(); N];
    let mut acc_min = [_mm512_setzero_ps(); N];
    let mut blocks = Blocks::<PACKED, 0>::new(w, rb, 144);
    for i in 0..nb {
        let (p, _) = blocks.block(i);
        // d and dmin: two f16 in word 0.
        // SAFETY: word 0 of block i of each of the 16 rows lies inside `w` (checked above).
        let dm = unsafe { word::<PACKED>(p, rb, 0) };
        let (dw, mw) = (f16_lo(dm), f16_lo(_mm512_srli_epi32::<16>(dm)));
        // SAFETY: words 1..5 of block i of each row lie inside `w`.
        let s = unsafe { words4::<PACKED>(p, rb, 1) };
        let (sc, mnp) = k4_scales_mins(s);
        let mut sum = [_mm512_setzero_si512(); N];
        for j in 0..4 {
            prefetch_next(w, rb, 4 * i + j, 4 * nb);
            // SAFETY: words 4 + 8j .. 12 + 8j of block i of each row lie in `w`.
            let (b0, b1) = unsafe {
                (
                    words4::<PACKED>(p, rb, 4 + 8 * j),
                    words4::<PACKED>(p, rb, 8 + 8 * j),
                )
            };
            let b = [b0[0], b0[1], b0[2], b0[3], b1[0], b1[1], b1[2], b1[3]];
            let mut lo = [_mm512_setzero_si512(); 8];
            let mut hi = [_mm512_setzero_si512(); 8];
            for g in 0..8 {
                lo[g] = _mm512_and_si512(b[g], m4);
                hi[g] = _mm512_and_si512(_mm512_srli_epi32::<4>(b[g]), m4);
            }
            for t in 0..N {
                let qs = &acts[t][i].qs[64 * j..64 * j + 64];
                let (mut dl, mut dh) = (_mm512_setzero_si512(), _mm512_setzero_si512());
                for g in 0..8 {
                    dl = _mm512_dpbusd_epi32(dl, lo[g], bcast4(qs, g));
                    dh = _mm512_dpbusd_epi32(dh, hi[g], bcast4(qs, 8 + g));
                }
                sum[t] = _mm512_add_epi32(
                    sum[t],
                    _mm512_add_epi32(
                        _mm512_mullo_epi32(dl, sc[2 * j]),
                        _mm512_mullo_epi32(dh, sc[2 * j + 1]),
                    ),
                );
            }
        }
        for t in 0..N {
            let y = &acts[t][i];
            let mins = k4_mins_dot(&mnp, y);
            let da = _mm512_set1_ps(y.d);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[t]), _mm512_mul_ps(dw, da), acc[t]);
            acc_min[t] =
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(mins), _mm512_mul_ps(mw, da), acc_min[t]);
        }
    }
    let mut out = [_mm512_setzero_ps(); N];
    for t in 0..N {
        out[t] = _mm512_sub_ps(acc[t], acc_min[t]);
    }
    out
}

/// The 8 scales (as i32) and 8 mins (as i16 pairs (0, 1), (2, 3), (4, 5), (6, 7), for
/// `vpmaddwd`) of a Q4_K/Q5_K super-block for 16 rows, from its transposed words 1..4
/// (`get_scale_min_k4`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) fn k4_scales_mins(s: [__m512i; 4]) -> ([__m512i; 8], [__m512i; 4]) {
    let m4 = _mm512_set1_epi8(0x0f);
    let m6 = _mm512_set1_epi8(0x3f);
    let m30 = _mm512_set1_epi8(0x30);
    let m8 = _mm512_set1_epi32(0xff);
    // Bytes of lane r: scales 0..4, mins 0..4, scales 4..8, mins 4..8.
    let sc_lo = _mm512_and_si512(s[0], m6);
    let mn_lo = _mm512_and_si512(s[1], m6);
    let sc_hi = _mm512_or_si512(
        _mm512_and_si512(s[2], m4),
        _mm512_and_si512(_mm512_srli_epi32::<2>(s[0]), m30),
    );
    let mn_hi = _mm512_or_si512(
        _mm512_and_si512(_mm512_srli_epi32::<4>(s[2]), m4),
        _mm512_and_si512(_mm512_srli_epi32::<2>(s[1]), m30),
    );
    let mut sc = [_mm512_setzero_si512(); 8];
    for j in 0..4 {
        let sh = _mm_cvtsi32_si128(8 * j as i32);
        sc[j] = _mm512_and_si512(_mm512_srl_epi32(sc_lo, sh), m8);
        sc[4 + j] = _mm512_and_si512(_mm512_srl_epi32(sc_hi, sh), m8);
    }
    let mnp = [
        byte_pairs(mn_lo, false),
        byte_pairs(mn_lo, true),
        byte_pairs(mn_hi, false),
        byte_pairs(mn_hi, true),
    ];
    (sc, mnp)
}

/// `sum_j min_j * (bsums[2j] + bsums[2j + 1])` for 16 rows (`scalar::mins_dot`), exactly.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) fn k4_mins_dot(mnp: &[__m512i; 4], y: &BlockQ8K) -> __m512i {
    let mut mins = _mm512_setzero_si512();
    for k in 0..4 {
        // Activation sums of sub-blocks 2k and 2k + 1, as an i16 pair.
        let q8s = |j: usize| y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32;
        let pair = (q8s(2 * k) & 0xffff) | (q8s(2 * k + 1) << 16);
        mins = _mm512_add_epi32(mins, _mm512_madd_epi16(mnp[k], _mm512_set1_epi32(pair)));
    }
    mins
}

/// Words `w..w + 8` of one block for the 16 rows (see [`words4`]).
///
/// # Safety
/// Those words of the 16 rows must be readable.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn words8<const PACKED: bool>(p: *const u8, rb: usize, w: usize) -> [__m512i; 8] {
    // SAFETY: the caller's promise.
    let (a, b) = unsafe { (words4::<PACKED>(p, rb, w), words4::<PACKED>(p, rb, w + 4)) };
    [a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]]
}

/// Q5_K in ggml's 8-lane arithmetic (`scalar::dot_q5_k`; llama.cpp does not repack Q5_K):
/// per lane `k` the exact `sum_j sc_j * dot_jk`, one FMA per block and lane, the mins term
/// folded into its own accumulator with an FMA per block. The 5-bit values are unsigned.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) fn q5_k_rows<const N: usize, const PACKED: bool>(
    w: &[u8],
    rb: usize,
    acts: [&[BlockQ8K]; N],
) -> [__m512; N] {
    let nb = rb / 176;
    assert!(acts.iter().all(|a| a.len() >= nb), "activations per row");
    let (m4, m1) = (_mm512_set1_epi8(0x0f), _mm512_set1_epi8(0x01));
    let mut acc = [[_mm512_setzero_ps(); 8]; N];
    let mut summs = [_mm512_setzero_ps(); N];
    let mut blocks = Blocks::<PACKED, 0>::new(w, rb, 176);
    for i in 0..nb {
        let (p, _) = blocks.block(i);
        // SAFETY: words 0..44 of block i of each of the 16 rows lie inside `w` (checked in
        // `Blocks::new`): d and dmin, 12 bytes of scales, 32 of fifth bits, 128 of nibbles.
        let (dm, s, qh) = unsafe {
            (
                word::<PACKED>(p, rb, 0),
                words4::<PACKED>(p, rb, 1),
                words8::<PACKED>(p, rb, 4),
            )
        };
        let (dw, mw) = (f16_lo(dm), f16_lo(_mm512_srli_epi32::<16>(dm)));
        let (sc, mnp) = k4_scales_mins(s);
        let mut lanes = [[_mm512_setzero_si512(); 8]; N];
        for j in 0..4 {
            prefetch_next(w, rb, 4 * i + j, 4 * nb);
            // SAFETY: as above.
            let q = unsafe { words8::<PACKED>(p, rb, 12 + 8 * j) };
            let (lo_bit, hi_bit) = (
                _mm_cvtsi32_si128(2 * j as i32),
                _mm_cvtsi32_si128(2 * j as i32 + 1),
            );
            let (mut lo, mut hi) = ([_mm512_setzero_si512(); 8], [_mm512_setzero_si512(); 8]);
            for k in 0..8 {
                let h0 = _mm512_and_si512(_mm512_srl_epi32(qh[k], lo_bit), m1);
                let h1 = _mm512_and_si512(_mm512_srl_epi32(qh[k], hi_bit), m1);
                lo[k] = _mm512_or_si512(_mm512_and_si512(q[k], m4), _mm512_slli_epi32::<4>(h0));
                hi[k] = _mm512_or_si512(
                    _mm512_and_si512(_mm512_srli_epi32::<4>(q[k]), m4),
                    _mm512_slli_epi32::<4>(h1),
                );
            }
            for t in 0..N {
                let qs = &acts[t][i].qs[64 * j..64 * j + 64];
                for k in 0..8 {
                    let l = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[k], bcast4(qs, k));
                    let h = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi[k], bcast4(qs, 8 + k));
                    let scaled = _mm512_add_epi32(
                        _mm512_mullo_epi32(l, sc[2 * j]),
                        _mm512_mullo_epi32(h, sc[2 * j + 1]),
                    );
                    lanes[t][k] = _mm512_add_epi32(lanes[t][k], scaled);
                }
            }
        }
        for t in 0..N {
            let y = &acts[t][i];
            let d = _mm512_mul_ps(dw, _mm512_set1_ps(y.d));
            let dmin = _mm512_mul_ps(mw, _mm512_set1_ps(-y.d));
            let mins = _mm512_cvtepi32_ps(k4_mins_dot(&mnp, y));
            summs[t] = _mm512_fmadd_ps(dmin, mins, summs[t]);
            for k in 0..8 {
                acc[t][k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes[t][k]), d, acc[t][k]);
            }
        }
    }
    let mut out = [_mm512_setzero_ps(); N];
    for t in 0..N {
        out[t] = _mm512_add_ps(hsum8_lanes(&acc[t]), summs[t]);
    }
    out
}

/// Selects the high i16 of every 32-bit lane in `_mm512_mask_blend_epi16`.
pub(super) const HIGH16: __mmask32 = 0xAAAA_AAAA;

/// `lo | (hi & mask)`, in one `vpternlogd`.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn merge(lo: __m512i, hi: __m512i, mask: __m512i) -> __m512i {
    // Truth table, bit (a << 2 | b << 1 | c) for (a, b, c) = (lo, hi, mask): a | (b & c).
    _mm512_ternarylogic_epi32::<0xF8>(lo, hi, mask)
}

/// Q6_K in ggml's 8-lane arithmetic (`scalar::dot_q6_k`, which llama.cpp uses: it does not
/// repack Q6_K). Lane `k` of ggml's chunk (bytes `4k..4k+4`) is vector `k` here, with its own
/// float accumulator per lane; the integer lane sums are exact, so only the FMA order matters.
/// The 6-bit values are unsigned, so `vpdpbusd` takes them as its unsigned operand directly.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) fn q6_k_rows<const N: usize, const PACKED: bool>(
    w: &[u8],
    rb: usize,
    acts: [&[BlockQ8K]; N],
) -> [__m512; N] {
    let nb = rb / 210;
    assert!(rb == nb * 210 && w.len() >= ROWS * rb, "16 whole rows");
    assert!(acts.iter().all(|a| a.len() >= nb), "activations per row");
    let (m4, m30) = (_mm512_set1_epi8(0x0f), _mm512_set1_epi8(0x30));
    let mut acc = [[_mm512_setzero_ps(); 8]; N];
    // Packed: 16 f16 scales per block first, then the bodies (208 bytes = 52 words a row).
    let (heads, bodies) = (w.as_ptr(), w.as_ptr().wrapping_add(32 * nb));
    for i in 0..nb {
        // SAFETY: block i of each of the 16 rows lies inside `w` (checked above), in either
        // layout; its f16 scale is bytes 208..210 (file) or the packed heads.
        let (p, dw) = unsafe {
            if PACKED {
                (bodies.add(16 * 208 * i), heads_f16(heads.add(32 * i)))
            } else {
                let p = w.as_ptr().add(210 * i);
                (p, f16_lo(_mm512_srli_epi32::<16>(dwords16(p.add(206), rb))))
            }
        };
        // SAFETY: words 48..52 (the 16 signed 8-bit scales) of block i of each row lie in `w`.
        let s = unsafe { words4::<PACKED>(p, rb, 48) };
        let mut sc = [_mm512_setzero_si512(); 16];
        for j in 0..16 {
            let up = _mm_cvtsi32_si128(24 - 8 * (j % 4) as i32);
            sc[j] = _mm512_srai_epi32::<24>(_mm512_sll_epi32(s[j / 4], up));
        }
        // Scale pairs as i16 (chunk 2p's, chunk 2p + 1's) for half h and lanes 0..4 / 4..8.
        let mut sp = [[[_mm512_setzero_si512(); 2]; 2]; 2];
        for (h, sp) in sp.iter_mut().enumerate() {
            for (p, sp) in sp.iter_mut().enumerate() {
                for (half, sp) in sp.iter_mut().enumerate() {
                    let (a, b) = (sc[8 * h + 4 * p + half], sc[8 * h + 4 * p + 2 + half]);
                    *sp = _mm512_mask_blend_epi16(HIGH16, a, _mm512_slli_epi32::<16>(b));
                }
            }
        }
        let mut lanes = [[_mm512_setzero_si512(); 8]; N];
        for h in 0..2 {
            // SAFETY: words 0..48 (ql, then qh) of block i of each row lie in `w`.
            let (ql0, ql1, qh) = unsafe {
                let w8 = |a: usize| {
                    let (x, y) = (words4::<PACKED>(p, rb, a), words4::<PACKED>(p, rb, a + 4));
                    [x[0], x[1], x[2], x[3], y[0], y[1], y[2], y[3]]
                };
                (w8(16 * h), w8(16 * h + 8), w8(32 + 8 * h))
            };
            for k in 0..8 {
                prefetch_next(w, rb, 16 * i + 8 * h + k, 16 * nb);
                // Lane k of chunk q (elements 128h + 32q + 4k..): low 4 bits from ql (byte l
                // or l + 32, low or high nibble), high 2 bits from qh's bits 2q, 2q + 1, moved
                // to bits 4..6 by one shift each and merged under a mask (`vpternlogd`).
                let (a, b, hb) = (ql0[k], ql1[k], qh[k]);
                let lo2 = _mm512_and_si512(_mm512_srli_epi32::<4>(a), m4);
                let lo3 = _mm512_and_si512(_mm512_srli_epi32::<4>(b), m4);
                let v = [
                    merge(_mm512_and_si512(a, m4), _mm512_slli_epi32::<4>(hb), m30),
                    merge(_mm512_and_si512(b, m4), _mm512_slli_epi32::<2>(hb), m30),
                    merge(lo2, hb, m30),
                    merge(lo3, _mm512_srli_epi32::<2>(hb), m30),
                ];
                for t in 0..N {
                    let qs = &acts[t][i].qs[128 * h..128 * h + 128];
                    let mut lane = lanes[t][k];
                    for p in 0..2 {
                        // Chunks 2p and 2p + 1: each dot fits an i16 (|4 x 63 x 128| < 2^15),
                        // so one `vpmaddwd` scales and adds the pair.
                        let zero = _mm512_setzero_si512();
                        let d0 = _mm512_dpbusd_epi32(zero, v[2 * p], bcast4(&qs[64 * p..], k));
                        let d1 =
                            _mm512_dpbusd_epi32(zero, v[2 * p + 1], bcast4(&qs[64 * p + 32..], k));
                        let pair = _mm512_mask_blend_epi16(HIGH16, d0, _mm512_slli_epi32::<16>(d1));
                        lane = _mm512_add_epi32(lane, _mm512_madd_epi16(pair, sp[h][p][k / 4]));
                    }
                    lanes[t][k] = lane;
                }
            }
        }
        for t in 0..N {
            let y = &acts[t][i];
            let d = _mm512_mul_ps(dw, _mm512_set1_ps(y.d));
            for k in 0..8 {
                // The -32 offset: lane k loses 32 (bsums[2k] sc[2k] + bsums[2k+1] sc[2k+1]).
                let off = _mm512_add_epi32(
                    _mm512_mullo_epi32(_mm512_set1_epi32(y.bsums[2 * k] as i32), sc[2 * k]),
                    _mm512_mullo_epi32(_mm512_set1_epi32(y.bsums[2 * k + 1] as i32), sc[2 * k + 1]),
                );
                let lane = _mm512_sub_epi32(lanes[t][k], _mm512_slli_epi32::<5>(off));
                acc[t][k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lane), d, acc[t][k]);
            }
        }
    }
    let mut out = [_mm512_setzero_ps(); N];
    for t in 0..N {
        out[t] = hsum8_lanes(&acc[t]);
    }
    out
}
