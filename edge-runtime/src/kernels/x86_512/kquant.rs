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
/// unpacked for 16 rows at once from the transposed scale bytes. The high nibbles stay in
/// place, 16 times their value, as in `q4_0_rows`: their scaled sums are kept apart and
/// shifted down once per super-block and token (at most 16 x 4 x 61440 x 63 < 2^31).
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
    let (m4, m4_hi) = (_mm512_set1_epi8(0x0f), _mm512_set1_epi8(0xf0u8 as i8));
    let mut acc = [_mm512_setzero_ps(); N];
    let mut acc_min = [_mm512_setzero_ps(); N];
    let mut blocks = Blocks::<PACKED, 0>::new(w, rb, 144);
    let mut pf = PrefetchAhead::new::<PACKED>(w, rb, 0, 8 * nb);
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
        let mut sum_hi16 = [_mm512_setzero_si512(); N];
        for j in 0..4 {
            // Two steps per `j`: bursts of 9 prefetches read Q4_K from memory at 31-35 GB/s
            // on one thread, against 37-40 with 4 or 5 (Zen 4, measured alternately).
            pf.step();
            // SAFETY: words 4 + 8j .. 12 + 8j of block i of each row lie in `w`.
            let b0 = unsafe { words4::<PACKED>(p, rb, 4 + 8 * j) };
            pf.step();
            // SAFETY: as above.
            let b1 = unsafe { words4::<PACKED>(p, rb, 8 + 8 * j) };
            let b = [b0[0], b0[1], b0[2], b0[3], b1[0], b1[1], b1[2], b1[3]];
            let mut lo = [_mm512_setzero_si512(); 8];
            let mut hi16 = [_mm512_setzero_si512(); 8];
            for g in 0..8 {
                lo[g] = _mm512_and_si512(b[g], m4);
                hi16[g] = _mm512_and_si512(b[g], m4_hi);
            }
            for t in 0..N {
                let qs = &acts[t][i].qs[64 * j..64 * j + 64];
                let (mut dl, mut dh) = (_mm512_setzero_si512(), _mm512_setzero_si512());
                for g in 0..8 {
                    dl = _mm512_dpbusd_epi32(dl, lo[g], bcast4(qs, g));
                    dh = _mm512_dpbusd_epi32(dh, hi16[g], bcast4(qs, 8 + g));
                }
                sum[t] = _mm512_add_epi32(sum[t], _mm512_mullo_epi32(dl, sc[2 * j]));
                sum_hi16[t] = _mm512_add_epi32(sum_hi16[t], _mm512_mullo_epi32(dh, sc[2 * j + 1]));
            }
        }
        for t in 0..N {
            sum[t] = _mm512_add_epi32(sum[t], _mm512_srai_epi32::<4>(sum_hi16[t]));
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

/// The first `WORDS` words of one block for 16 rows, word `j` as one vector (lane `r`: row
/// `r`'s word `j`): read in place from a packed block, or transposed once from the file's
/// layout into a buffer, so that kernels can take single words in any order.
pub(super) struct Body<const PACKED: bool, const WORDS: usize> {
    p: *const u8,
    words: [__m512i; WORDS],
}

impl<const PACKED: bool, const WORDS: usize> Body<PACKED, WORDS> {
    /// # Safety
    /// Words `0..WORDS` of the block at `p` (its body; rows `rb` apart in the file's layout)
    /// must be readable for the 16 rows.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn new(p: *const u8, rb: usize) -> Self {
        let mut words = [_mm512_setzero_si512(); WORDS];
        if !PACKED {
            for g in 0..WORDS / 4 {
                // SAFETY: the caller's promise (WORDS is a multiple of 4 here).
                let x = unsafe { words4::<false>(p, rb, 4 * g) };
                words[4 * g..4 * g + 4].copy_from_slice(&x);
            }
        }
        Self { p, words }
    }

    /// Word `j` of the 16 rows.
    ///
    /// # Safety
    /// `j < WORDS`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn word(&self, j: usize) -> __m512i {
        if PACKED {
            // SAFETY: j < WORDS, and `new`'s caller promised those words readable.
            unsafe { load64(self.p.add(64 * j)) }
        } else {
            self.words[j]
        }
    }
}

/// Bit `b` of every byte of `x` moved to bit 4 (other bits: garbage for a 0x10 mask).
#[inline]
#[target_feature(enable = "avx512f")]
fn bit_to_4(x: __m512i, b: usize) -> __m512i {
    // Shifts of 32-bit lanes: what crosses from a neighbouring byte lands below bit 4 (left
    // shifts by up to 4) or above it (right shifts by up to 3).
    match b {
        0 => _mm512_slli_epi32::<4>(x),
        1 => _mm512_slli_epi32::<3>(x),
        2 => _mm512_slli_epi32::<2>(x),
        3 => _mm512_slli_epi32::<1>(x),
        4 => x,
        5 => _mm512_srli_epi32::<1>(x),
        6 => _mm512_srli_epi32::<2>(x),
        _ => _mm512_srli_epi32::<3>(x),
    }
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
    let (m4, m10) = (_mm512_set1_epi8(0x0f), _mm512_set1_epi8(0x10));
    let mut acc = [[_mm512_setzero_ps(); 8]; N];
    let mut summs = [_mm512_setzero_ps(); N];
    let mut blocks = Blocks::<PACKED, 0>::new(w, rb, 176);
    let mut pf = PrefetchAhead::new::<PACKED>(w, rb, 0, 16 * nb);
    for i in 0..nb {
        let (p, _) = blocks.block(i);
        // SAFETY: words 0..44 of block i of each of the 16 rows lie inside `w` (checked in
        // `Blocks::new`): d and dmin, 12 bytes of scales, 32 of fifth bits, 128 of nibbles.
        let (dm, s) = unsafe { (word::<PACKED>(p, rb, 0), words4::<PACKED>(p, rb, 1)) };
        let (dw, mw) = (f16_lo(dm), f16_lo(_mm512_srli_epi32::<16>(dm)));
        let (sc, mnp) = k4_scales_mins(s);
        // SAFETY: words 4..44 of block i of each row lie in `w` (as above).
        let body = unsafe { Body::<PACKED, 44>::new(p, rb) };
        let d: [__m512; N] =
            std::array::from_fn(|t| _mm512_mul_ps(dw, _mm512_set1_ps(acts[t][i].d)));
        // Lane k at a time: its 8 products per row and token are summed exactly in integers,
        // then folded in with one FMA; few registers live, so 4 tokens do not spill.
        for k in 0..8 {
            // SAFETY: words 4 + k and 12 + 8j + k are below 44.
            let qh = unsafe { body.word(4 + k) };
            let mut lane = [_mm512_setzero_si512(); N];
            for j in 0..4 {
                if j % 2 == 0 {
                    pf.step();
                }
                // SAFETY: as above.
                let q = unsafe { body.word(12 + 8 * j + k) };
                // Elements 64j + 4k.. (low nibbles, fifth bit 2j) and 64j + 32 + 4k.. (high
                // nibbles, fifth bit 2j + 1), unsigned 0..32.
                let lo = merge(_mm512_and_si512(q, m4), bit_to_4(qh, 2 * j), m10);
                let hi = merge(
                    _mm512_and_si512(_mm512_srli_epi32::<4>(q), m4),
                    bit_to_4(qh, 2 * j + 1),
                    m10,
                );
                for t in 0..N {
                    let qs = &acts[t][i].qs[64 * j..64 * j + 64];
                    let zero = _mm512_setzero_si512();
                    let l = _mm512_dpbusd_epi32(zero, lo, bcast4(qs, k));
                    let h = _mm512_dpbusd_epi32(zero, hi, bcast4(qs, 8 + k));
                    lane[t] = scaled_add(scaled_add(lane[t], l, sc[2 * j]), h, sc[2 * j + 1]);
                }
            }
            for t in 0..N {
                acc[t][k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lane[t]), d[t], acc[t][k]);
            }
        }
        for t in 0..N {
            let y = &acts[t][i];
            let dmin = _mm512_mul_ps(mw, _mm512_set1_ps(-y.d));
            let mins = _mm512_cvtepi32_ps(k4_mins_dot(&mnp, y));
            summs[t] = _mm512_fmadd_ps(dmin, mins, summs[t]);
        }
    }
    let mut out = [_mm512_setzero_ps(); N];
    for t in 0..N {
        out[t] = _mm512_add_ps(hsum8_lanes(&acc[t]), summs[t]);
    }
    out
}

/// `acc + dot * scale` per 32-bit lane, exactly, in one `vpdpwssd`, for a `dot` that fits an
/// i16 (4 products of a 5- or 6-bit weight and an 8-bit activation: |4 x 63 x 128| < 2^15)
/// and a `scale` whose high 16 bits are zero: the high halves' product is then 0 whatever
/// `dot`'s sign extension holds.
#[inline]
#[target_feature(enable = "avx512f,avx512vnni")]
fn scaled_add(acc: __m512i, dot: __m512i, scale: __m512i) -> __m512i {
    _mm512_dpwssd_epi32(acc, dot, scale)
}

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
    // Per 32-bit lane, byte b to byte 1 (the others zero), and bytes o, o + 1 to bytes 1, 3.
    let one_byte: [__m512i; 4] = [0, 1, 2, 3].map(|b| {
        #[rustfmt::skip]
        let c = _mm_setr_epi8(-1, b, -1, -1, -1, 4 + b, -1, -1, -1, 8 + b, -1, -1, -1, 12 + b, -1, -1);
        _mm512_broadcast_i32x4(c)
    });
    let two_bytes: [__m512i; 2] = [0, 2].map(|o| {
        #[rustfmt::skip]
        let c = _mm_setr_epi8(-1, o, -1, o + 1, -1, 4 + o, -1, 5 + o, -1, 8 + o, -1, 9 + o, -1, 12 + o, -1, 13 + o);
        _mm512_broadcast_i32x4(c)
    });
    let mut acc = [[_mm512_setzero_ps(); 8]; N];
    // Packed: 16 f16 scales per block first, then the bodies (208 bytes = 52 words a row).
    let (heads, bodies) = (w.as_ptr(), w.as_ptr().wrapping_add(32 * nb));
    let mut pf = PrefetchAhead::new::<PACKED>(w, rb, ROWS * 2 * nb, 16 * nb);
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
        // The scales as i16 with a zero high half, for `scaled_add`: byte j % 4 of word j / 4
        // moved to byte 1 (the others zero), then the i16 halves shifted down arithmetically.
        let mut sc16 = [_mm512_setzero_si512(); 16];
        for j in 0..16 {
            sc16[j] = _mm512_srai_epi16::<8>(_mm512_shuffle_epi8(s[j / 4], one_byte[j % 4]));
        }
        // SAFETY: words 0..48 (ql, then qh) of block i of each row lie in `w`.
        let body = unsafe { Body::<PACKED, 48>::new(p, rb) };
        let d: [__m512; N] =
            std::array::from_fn(|t| _mm512_mul_ps(dw, _mm512_set1_ps(acts[t][i].d)));
        // Lane k at a time (see `q5_k_rows`).
        for k in 0..8 {
            pf.step();
            // The -32 offset: lane k loses 32 (bsums[2k] sc[2k] + bsums[2k+1] sc[2k+1]), its
            // starting value: scales 2k and 2k + 1 as an i16 pair times -32 (at most 4096),
            // against the activations' pair of sums.
            let neg = _mm512_mullo_epi16(
                _mm512_srai_epi16::<8>(_mm512_shuffle_epi8(s[k / 2], two_bytes[k % 2])),
                _mm512_set1_epi16(-32),
            );
            let mut lane = [_mm512_setzero_si512(); N];
            for t in 0..N {
                let b = &acts[t][i].bsums;
                let pair = (b[2 * k] as u16 as u32 | (b[2 * k + 1] as u16 as u32) << 16) as i32;
                lane[t] = _mm512_dpwssd_epi32(lane[t], neg, _mm512_set1_epi32(pair));
            }
            for h in 0..2 {
                if h == 1 {
                    pf.step();
                }
                // Lane k of chunk q (elements 128h + 32q + 4k..): low 4 bits from ql (byte l
                // or l + 32, low or high nibble), high 2 bits from qh's bits 2q, 2q + 1, moved
                // to bits 4..6 by one shift each and merged under a mask (`vpternlogd`).
                // SAFETY: words 16h + k, 16h + 8 + k and 32 + 8h + k are below 48.
                let (a, b, hb) = unsafe {
                    (
                        body.word(16 * h + k),
                        body.word(16 * h + 8 + k),
                        body.word(32 + 8 * h + k),
                    )
                };
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
                    for q in 0..4 {
                        let y = bcast4(&qs[32 * q..], k);
                        let dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v[q], y);
                        lane[t] = scaled_add(lane[t], dot, sc16[8 * h + 2 * q + k / 4]);
                    }
                }
            }
            for t in 0..N {
                acc[t][k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lane[t]), d[t], acc[t][k]);
            }
        }
    }
    let mut out = [_mm512_setzero_ps(); N];
    for t in 0..N {
        out[t] = hsum8_lanes(&acc[t]);
    }
    out
}
