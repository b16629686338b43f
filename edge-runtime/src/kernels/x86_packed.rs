//! AVX2 kernels over packed groups of 16 rows ([`super::repack`]): Q4_0, Q8_0, Q4_K, Q5_K,
//! Q6_K. A 256-bit load of a packed block's word `j` gives 8 rows of that word, lane `r`
//! holding row `r`, so the group is read as two halves (rows 0..8 at the word's first 32 bytes,
//! rows 8..16 at the next 32) with plain sequential loads and no horizontal sums:
//! `vpmaddubsw` multiplies each lane's 4 weight bytes by 4 activation bytes broadcast to every
//! lane. Per row the integer sums are exact and are folded in as llama.cpp folds them on AVX2,
//! so each row's result is bit for bit its scalar twin's: one FMA per block for the types it
//! repacks (Q4_0, Q4_K: `scalar::dot_q4_0`, `scalar::dot_q4_k_seq`), ggml's 8 lanes of 4-byte
//! sums for the others (`scalar::dot_q8_0`, `dot_q5_k`, `dot_q6_k`), one accumulator vector
//! per lane for the 8 rows.
//!
//! Decode takes both halves in one pass over the blocks, so that all the arithmetic overlaps
//! the stream from memory. With 4 tokens, the kernels with 8 lane accumulators per row take one
//! half a pass (the second reading the group from cache); Q4_0 and Q4_K take both.

// Index loops over the words of a block mirror its layout.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::x86_base::PrefetchAhead;
use super::{BlockQ8, BlockQ8K, Dot16, Rows16, Rows16x4, ROWS16 as ROWS};
use llama_spec::gguf::GgmlType;

/// Rows per 256-bit vector: half a packed group.
const HALF: usize = 8;

pub fn packed16(ty: GgmlType) -> Option<Dot16> {
    Some(match ty {
        GgmlType::Q4_0 => Dot16::Q8(kernels(q4_0_1, q4_0_4)),
        GgmlType::Q8_0 => Dot16::Q8(kernels(q8_0_1, q8_0_4)),
        GgmlType::Q4_K => Dot16::Q8K(kernels(q4_k_1, q4_k_4)),
        GgmlType::Q5_K => Dot16::Q8K(kernels(q5_k_1, q5_k_4)),
        GgmlType::Q6_K => Dot16::Q8K(kernels(q6_k_1, q6_k_4)),
        _ => return None,
    })
}

/// One type's pair of kernels (packed ones serve decode and prefill alike).
fn kernels<A>(one: fn(&[u8], usize, &[A]) -> [f32; ROWS], four: Rows16x4<A>) -> Rows16<A> {
    Rows16 {
        one,
        four,
        decode: true,
    }
}

/// 4 activation bytes `qs[4k..4k+4]` broadcast to every 32-bit lane.
#[inline]
#[target_feature(enable = "avx2")]
fn bcast4(qs: &[i8], k: usize) -> __m256i {
    let b = &qs[4 * k..4 * k + 4];
    _mm256_set1_epi32(i32::from_le_bytes([
        b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8,
    ]))
}

/// 32 bytes at `p`.
///
/// # Safety
/// `p..p + 32` must be readable.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load32(p: *const u8) -> __m256i {
    // SAFETY: the caller's promise; unaligned load (packed groups are 64-aligned in practice).
    unsafe { _mm256_loadu_si256(p.cast()) }
}

/// Checks the shapes the kernels' unsafe loads rely on (16 whole rows of `bs`-byte blocks in
/// `w`, an activation block per weight block, halves up to `end` of the two); returns the
/// blocks per row.
fn check<A>(w: &[u8], rb: usize, bs: usize, acts: &[&[A]], end: usize) -> usize {
    let nb = rb / bs;
    assert!(rb == nb * bs && w.len() >= ROWS * rb, "16 whole rows");
    assert!(acts.iter().all(|a| a.len() >= nb), "activations per row");
    assert!(end <= 2, "two halves");
    nb
}

/// Low and high nibbles of each byte (unsigned 0..16).
#[inline]
#[target_feature(enable = "avx2")]
fn nibbles(b: __m256i) -> (__m256i, __m256i) {
    let m4 = _mm256_set1_epi8(0x0f);
    (
        _mm256_and_si256(b, m4),
        _mm256_and_si256(_mm256_srli_epi16::<4>(b), m4),
    )
}

/// Q4_0, halves `h0..h0 + H` (rows `8 * h..8 * h + 8` each), against `N` activation rows: per block and row the
/// exact `sum((n - 8) q) = sum(n q) - 8 sum(q)` (nibbles `n` are the unsigned operand), then one
/// FMA by `d_w * d_a`. The i16 sums cannot wrap: 8 pairs of products of at most 15 * 127.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_0_rows<const N: usize, const H: usize>(
    w: &[u8],
    rb: usize,
    acts: [&[BlockQ8]; N],
    h0: usize,
) -> [[__m256; H]; N] {
    let nb = check(w, rb, 18, &acts, h0 + H);
    let ones = _mm256_set1_epi16(1);
    // Heads: 16 f16 scales per block; then the bodies, 4 words x 16 rows per block.
    let heads = w.as_ptr();
    let bodies = heads.wrapping_add(ROWS * 2 * nb);
    let mut acc = [[_mm256_setzero_ps(); H]; N];
    let mut pf = PrefetchAhead::new::<true>(w, rb, ROWS * 2 * nb, nb);
    for i in 0..nb {
        pf.step();
        for h in 0..H {
            let half = h0 + h;
            // SAFETY: block i's 16 scales (32 bytes at heads + 32i) and body (256 bytes at
            // bodies + 256i) lie inside the group's 16 * rb bytes of `w` (checked above).
            let (dw, b) = unsafe {
                let dw =
                    _mm256_cvtph_ps(_mm_loadu_si128(heads.add(32 * i + 2 * HALF * half).cast()));
                let p = bodies.add(256 * i + 4 * HALF * half);
                (dw, [0, 1, 2, 3].map(|g| load32(p.add(64 * g))))
            };
            let (mut lo, mut hi) = ([_mm256_setzero_si256(); 4], [_mm256_setzero_si256(); 4]);
            for g in 0..4 {
                (lo[g], hi[g]) = nibbles(b[g]);
            }
            for t in 0..N {
                let y = &acts[t][i];
                // Low nibbles are elements 4g.., high ones 16 + 4g..
                let mut s = _mm256_maddubs_epi16(lo[0], bcast4(&y.qs, 0));
                s = _mm256_add_epi16(s, _mm256_maddubs_epi16(hi[0], bcast4(&y.qs, 4)));
                for g in 1..4 {
                    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(lo[g], bcast4(&y.qs, g)));
                    s = _mm256_add_epi16(s, _mm256_maddubs_epi16(hi[g], bcast4(&y.qs, 4 + g)));
                }
                // Vector broadcasts and a vector shift (the scalar `8 * sum` and two `set1`s
                // cost a few more ops a token).
                let sum8 =
                    _mm256_slli_epi32::<3>(_mm256_broadcastd_epi32(_mm_cvtsi32_si128(y.sum)));
                let isum = _mm256_sub_epi32(_mm256_madd_epi16(s, ones), sum8);
                let d = _mm256_mul_ps(dw, _mm256_broadcast_ss(&y.d));
                acc[t][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), d, acc[t][h]);
            }
        }
    }
    acc
}

/// Q8_0 in ggml's 8-lane arithmetic (`scalar::dot_q8_0`), halves `h0..h0 + H`: lane
/// `k` of ggml's vectors (bytes `4k..4k+4` of the block) is the block's packed word `k`, which
/// keeps its own accumulator; ggml's sign trick (`|w|` the unsigned operand, the activations
/// given the weights' signs).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8_0_rows<const N: usize, const H: usize>(
    w: &[u8],
    rb: usize,
    acts: [&[BlockQ8]; N],
    h0: usize,
) -> [[__m256; H]; N] {
    let nb = check(w, rb, 34, &acts, h0 + H);
    let ones = _mm256_set1_epi16(1);
    // Heads: 16 f16 scales per block; then the bodies, 8 words x 16 rows per block.
    let heads = w.as_ptr();
    let bodies = heads.wrapping_add(ROWS * 2 * nb);
    let mut acc = [[[_mm256_setzero_ps(); 8]; H]; N];
    let mut pf = PrefetchAhead::new::<true>(w, rb, ROWS * 2 * nb, nb);
    for i in 0..nb {
        if h0 == 0 {
            pf.step();
        }
        for h in 0..H {
            let half = h0 + h;
            // SAFETY: block i's 16 scales (32 bytes at heads + 32i) and body (512 bytes at
            // bodies + 512i) lie inside the group's 16 * rb bytes of `w` (checked above).
            let dw = _mm256_cvtph_ps(unsafe {
                _mm_loadu_si128(heads.add(32 * i + 2 * HALF * half).cast())
            });
            let p = bodies.wrapping_add(ROWS * 32 * i + 4 * HALF * half);
            let d: [__m256; N] =
                std::array::from_fn(|t| _mm256_mul_ps(dw, _mm256_set1_ps(acts[t][i].d)));
            for k in 0..8 {
                // SAFETY: as above.
                let wv = unsafe { load32(p.add(64 * k)) };
                let aw = _mm256_sign_epi8(wv, wv);
                for t in 0..N {
                    let a = _mm256_sign_epi8(bcast4(&acts[t][i].qs, k), wv);
                    let lane = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, a), ones);
                    acc[t][h][k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(lane), d[t], acc[t][h][k]);
                }
            }
        }
    }
    std::array::from_fn(|t| std::array::from_fn(|h| hsum8_lanes(&acc[t][h])))
}

/// The low and high f16 of each 32-bit lane, as floats (Q4_K's `d` and `dmin`).
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn f16_pairs(v: __m256i) -> (__m256, __m256) {
    // In each 128-bit lane: the 4 low halves, then the 4 high halves.
    #[rustfmt::skip]
    let ctl = _mm256_broadcastsi128_si256(_mm_setr_epi8(
        0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
    ));
    // Quadwords (lo 0-3, hi 0-3, lo 4-7, hi 4-7) -> (lo 0-7, hi 0-7).
    let x = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_shuffle_epi8(v, ctl));
    (
        _mm256_cvtph_ps(_mm256_castsi256_si128(x)),
        _mm256_cvtph_ps(_mm256_extracti128_si256::<1>(x)),
    )
}

/// Each 32-bit lane's bytes 0 and 1 (`hi` false) or 2 and 3, widened to an i16 pair.
#[inline]
#[target_feature(enable = "avx2")]
fn byte_pairs(v: __m256i, hi: bool) -> __m256i {
    // -1 gives zero.
    let o = if hi { 2 } else { 0 };
    #[rustfmt::skip]
    let ctl = _mm256_broadcastsi128_si256(_mm_setr_epi8(
        o, -1, 1 + o, -1, 4 + o, -1, 5 + o, -1, 8 + o, -1, 9 + o, -1, 12 + o, -1, 13 + o, -1,
    ));
    _mm256_shuffle_epi8(v, ctl)
}

/// A Q4_K super-block's 8 scales, each as an i16 pair `(s, s)` (so that `vpmaddwd` of a pair
/// of i16 partial sums with it gives `s * (a + b)`), and its 8 mins as i16 pairs (0, 1),
/// (2, 3), (4, 5), (6, 7), for 8 rows, from words 1..4 of the block (`get_scale_min_k4`).
#[inline]
#[target_feature(enable = "avx2")]
fn k4_scales_mins(s: [__m256i; 3]) -> ([__m256i; 8], [__m256i; 4]) {
    let m4 = _mm256_set1_epi8(0x0f);
    let m6 = _mm256_set1_epi8(0x3f);
    let m30 = _mm256_set1_epi8(0x30);
    let m8 = _mm256_set1_epi32(0xff);
    // Bytes of lane r: scales 0..4, mins 0..4, scales 4..8, mins 4..8.
    let sc_lo = _mm256_and_si256(s[0], m6);
    let mn_lo = _mm256_and_si256(s[1], m6);
    let sc_hi = _mm256_or_si256(
        _mm256_and_si256(s[2], m4),
        _mm256_and_si256(_mm256_srli_epi32::<2>(s[0]), m30),
    );
    let mn_hi = _mm256_or_si256(
        _mm256_and_si256(_mm256_srli_epi32::<4>(s[2]), m4),
        _mm256_and_si256(_mm256_srli_epi32::<2>(s[1]), m30),
    );
    let mut sc = [_mm256_setzero_si256(); 8];
    for j in 0..4 {
        let sh = _mm_cvtsi32_si128(8 * j as i32);
        for (k, v) in [(j, sc_lo), (4 + j, sc_hi)] {
            let x = _mm256_and_si256(_mm256_srl_epi32(v, sh), m8);
            sc[k] = _mm256_or_si256(x, _mm256_slli_epi32::<16>(x));
        }
    }
    let mnp = [
        byte_pairs(mn_lo, false),
        byte_pairs(mn_lo, true),
        byte_pairs(mn_hi, false),
        byte_pairs(mn_hi, true),
    ];
    (sc, mnp)
}

/// `sum_j min_j * (bsums[2j] + bsums[2j + 1])` for 8 rows (`scalar::mins_dot`), exactly.
#[inline]
#[target_feature(enable = "avx2")]
fn k4_mins_dot(mnp: &[__m256i; 4], y: &BlockQ8K) -> __m256i {
    let mut mins = _mm256_setzero_si256();
    for k in 0..4 {
        // Activation sums of sub-blocks 2k and 2k + 1, as an i16 pair.
        let q8s = |j: usize| y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32;
        let pair = (q8s(2 * k) & 0xffff) | (q8s(2 * k + 1) << 16);
        mins = _mm256_add_epi32(mins, _mm256_madd_epi16(mnp[k], _mm256_set1_epi32(pair)));
    }
    mins
}

/// Q4_K in llama.cpp's repacked arithmetic (`scalar::dot_q4_k_seq`), halves `h0..h0 + H`: per super-block and row
/// the exact `sum_j sc_j * dot_j` and `sum_j mn_j * bsum_j`, each folded in with one FMA. The
/// i16 sums of 8 `vpmaddubsw` cannot wrap: 16 products of at most 15 * 128.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_rows<const N: usize, const H: usize>(
    w: &[u8],
    rb: usize,
    acts: [&[BlockQ8K]; N],
    h0: usize,
) -> [[__m256; H]; N] {
    let nb = check(w, rb, 144, &acts, h0 + H);
    let mut acc = [[_mm256_setzero_ps(); H]; N];
    let mut acc_min = [[_mm256_setzero_ps(); H]; N];
    let mut pf = PrefetchAhead::new::<true>(w, rb, 0, 4 * H * nb);
    for i in 0..nb {
        for h in 0..H {
            // Block i's 36 words of the 16 rows, this half's 32 bytes of each.
            let p = w
                .as_ptr()
                .wrapping_add(ROWS * 144 * i + 4 * HALF * (h0 + h));
            // SAFETY: words 0..4 of block i lie inside the group (checked above).
            let (dm, s) = unsafe { (load32(p), [1, 2, 3].map(|k| load32(p.add(64 * k)))) };
            let (dw, mw) = f16_pairs(dm);
            let (sc, mnp) = k4_scales_mins(s);
            let mut sum = [_mm256_setzero_si256(); N];
            for j in 0..4 {
                // Spread over both halves: bursts of 9 prefetches a step read more slowly.
                pf.step();
                let (mut dl, mut dh) = ([_mm256_setzero_si256(); N], [_mm256_setzero_si256(); N]);
                for g in 0..8 {
                    // SAFETY: word 4 + 8j + g of block i lies inside the group.
                    let (lo, hi) = nibbles(unsafe { load32(p.add(64 * (4 + 8 * j + g))) });
                    for t in 0..N {
                        let qs = &acts[t][i].qs[64 * j..64 * j + 64];
                        dl[t] = _mm256_add_epi16(dl[t], _mm256_maddubs_epi16(lo, bcast4(qs, g)));
                        dh[t] =
                            _mm256_add_epi16(dh[t], _mm256_maddubs_epi16(hi, bcast4(qs, 8 + g)));
                    }
                }
                for t in 0..N {
                    let scaled = _mm256_add_epi32(
                        _mm256_madd_epi16(dl[t], sc[2 * j]),
                        _mm256_madd_epi16(dh[t], sc[2 * j + 1]),
                    );
                    sum[t] = _mm256_add_epi32(sum[t], scaled);
                }
            }
            for t in 0..N {
                let y = &acts[t][i];
                let mins = k4_mins_dot(&mnp, y);
                let da = _mm256_set1_ps(y.d);
                acc[t][h] =
                    _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[t]), _mm256_mul_ps(dw, da), acc[t][h]);
                acc_min[t][h] = _mm256_fmadd_ps(
                    _mm256_cvtepi32_ps(mins),
                    _mm256_mul_ps(mw, da),
                    acc_min[t][h],
                );
            }
        }
    }
    std::array::from_fn(|t| std::array::from_fn(|h| _mm256_sub_ps(acc[t][h], acc_min[t][h])))
}

/// Bit `B` of each byte of `qh`, moved to bit 4 (Q5_K's fifth bit).
#[inline]
#[target_feature(enable = "avx2")]
fn fifth_bit<const B: i32>(qh: __m256i) -> __m256i {
    // Shifts by 16-bit lanes: the bits carried across a byte boundary are masked off.
    let v = match B {
        0 => _mm256_slli_epi16::<4>(qh),
        1 => _mm256_slli_epi16::<3>(qh),
        2 => _mm256_slli_epi16::<2>(qh),
        3 => _mm256_slli_epi16::<1>(qh),
        4 => qh,
        5 => _mm256_srli_epi16::<1>(qh),
        6 => _mm256_srli_epi16::<2>(qh),
        _ => _mm256_srli_epi16::<3>(qh),
    };
    _mm256_and_si256(v, _mm256_set1_epi8(0x10))
}

/// Q5_K in ggml's 8-lane arithmetic (`scalar::dot_q5_k`), halves `h0..h0 + H`, lane
/// by lane as [`q6_k_rows`]: lane `k` takes word `4 + k` of the fifth bits and word
/// `12 + 8j + k` of the nibbles of each 64-element part `j`. The min term is folded in per
/// super-block with one FMA, as GCC contracts ggml's `summs += dmin * hsum`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_k_rows<const N: usize, const H: usize>(
    w: &[u8],
    rb: usize,
    acts: [&[BlockQ8K]; N],
    h0: usize,
) -> [[__m256; H]; N] {
    let nb = check(w, rb, 176, &acts, h0 + H);
    let mut acc = [[[_mm256_setzero_ps(); 8]; H]; N];
    let mut summs = [[_mm256_setzero_ps(); H]; N];
    let mut pf = PrefetchAhead::new::<true>(w, rb, 0, 8 * nb);
    for i in 0..nb {
        for h in 0..H {
            let half = h0 + h;
            // Block i's 44 words of the 16 rows, this half's 32 bytes of each.
            let p = w.as_ptr().wrapping_add(ROWS * 176 * i + 4 * HALF * half);
            // SAFETY: words 0..44 of block i lie inside the group (checked above).
            let word = |k: usize| unsafe { load32(p.add(64 * k)) };
            let (dw, mw) = f16_pairs(word(0));
            let (sc, mnp) = k4_scales_mins([word(1), word(2), word(3)]);
            for t in 0..N {
                let y = &acts[t][i];
                let dmin = _mm256_mul_ps(_mm256_set1_ps(-y.d), mw);
                let mins = _mm256_cvtepi32_ps(k4_mins_dot(&mnp, y));
                summs[t][h] = _mm256_fmadd_ps(dmin, mins, summs[t][h]);
            }
            for k in 0..8 {
                if half == 0 {
                    pf.step();
                }
                let qh = word(4 + k);
                let hb = [
                    fifth_bit::<0>(qh),
                    fifth_bit::<1>(qh),
                    fifth_bit::<2>(qh),
                    fifth_bit::<3>(qh),
                    fifth_bit::<4>(qh),
                    fifth_bit::<5>(qh),
                    fifth_bit::<6>(qh),
                    fifth_bit::<7>(qh),
                ];
                let mut vals = [_mm256_setzero_si256(); 8];
                for j in 0..4 {
                    let (lo, hi) = nibbles(word(12 + 8 * j + k));
                    vals[2 * j] = _mm256_or_si256(lo, hb[2 * j]);
                    vals[2 * j + 1] = _mm256_or_si256(hi, hb[2 * j + 1]);
                }
                for t in 0..N {
                    let y = &acts[t][i];
                    let mut lane = _mm256_setzero_si256();
                    for c in 0..8 {
                        // Part c / 2, its low (even c) or high 32 elements.
                        let a = bcast4(&y.qs[32 * c..32 * c + 32], k);
                        let s = _mm256_maddubs_epi16(vals[c], a);
                        lane = _mm256_add_epi32(lane, _mm256_madd_epi16(s, sc[c]));
                    }
                    let d = _mm256_mul_ps(_mm256_set1_ps(y.d), dw);
                    acc[t][h][k] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lane), acc[t][h][k]);
                }
            }
        }
    }
    std::array::from_fn(|t| {
        std::array::from_fn(|h| _mm256_add_ps(hsum8_lanes(&acc[t][h]), summs[t][h]))
    })
}

/// Byte `b` of each 32-bit lane, sign-extended, as an i16 pair `(s, s)`; with `pair`, bytes
/// `b` and `b + 1` as the pair.
#[inline]
#[target_feature(enable = "avx2")]
fn i8_pair<const B: i8, const PAIR: bool>(v: __m256i) -> __m256i {
    // Into the high byte of each i16 (-1 gives zero), then an arithmetic shift down.
    let c = if PAIR { B + 1 } else { B };
    #[rustfmt::skip]
    let ctl = _mm256_broadcastsi128_si256(_mm_setr_epi8(
        -1, B, -1, c, -1, 4 + B, -1, 4 + c, -1, 8 + B, -1, 8 + c, -1, 12 + B, -1, 12 + c,
    ));
    _mm256_srai_epi16::<8>(_mm256_shuffle_epi8(v, ctl))
}

/// ggml's `hsum_float_8` of 8 lane accumulators, for 8 rows at once (lane `r`: row `r`):
/// lanes `k` and `k + 4` first, then `(0 + 2) + (1 + 3)`.
#[inline]
#[target_feature(enable = "avx")]
fn hsum8_lanes(a: &[__m256; 8]) -> __m256 {
    let r: [__m256; 4] = std::array::from_fn(|k| _mm256_add_ps(a[k], a[k + 4]));
    _mm256_add_ps(_mm256_add_ps(r[0], r[2]), _mm256_add_ps(r[1], r[3]))
}

/// Q6_K in ggml's 8-lane arithmetic (`scalar::dot_q6_k`), halves `h0..h0 + H`.
/// Lane `k` of ggml's vectors (bytes `4k..4k+4` of each 32-element chunk) is one packed word
/// per chunk here, so the kernel goes lane by lane: the lane's exact integer sum for the 8
/// rows, the `-32` offset taken out with the activation sums, then one FMA into that lane's
/// accumulator. The i16 pairs of `vpmaddubsw` cannot saturate: 2 products of at most 63 * 128.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_rows<const N: usize, const H: usize>(
    w: &[u8],
    rb: usize,
    acts: [&[BlockQ8K]; N],
    h0: usize,
) -> [[__m256; H]; N] {
    let nb = check(w, rb, 210, &acts, h0 + H);
    let (m4, m30) = (_mm256_set1_epi8(0x0f), _mm256_set1_epi8(0x30));
    // Heads (the f16 `d`, at each block's end in the file): 16 per block; then the bodies,
    // 52 words x 16 rows per block.
    let heads = w.as_ptr();
    let bodies = heads.wrapping_add(ROWS * 2 * nb);
    let mut acc = [[[_mm256_setzero_ps(); 8]; H]; N];
    let mut pf = PrefetchAhead::new::<true>(w, rb, ROWS * 2 * nb, 8 * nb);
    for i in 0..nb {
        for h in 0..H {
            let half = h0 + h;
            let p = bodies.wrapping_add(ROWS * 208 * i + 4 * HALF * half);
            // SAFETY: block i's 16 heads (32 bytes at heads + 32i) and its words (below 52) lie
            // inside the group's 16 * rb bytes of `w` (checked above).
            let word = |k: usize| unsafe { load32(p.add(64 * k)) };
            // SAFETY: as above.
            let dw = _mm256_cvtph_ps(unsafe {
                _mm_loadu_si128(heads.add(32 * i + 2 * HALF * half).cast())
            });
            // The 16 scales (words 48..52), each as an i16 pair for `vpmaddwd`.
            let sw = [word(48), word(49), word(50), word(51)];
            let mut sc = [_mm256_setzero_si256(); 16];
            for m in 0..4 {
                sc[4 * m] = i8_pair::<0, false>(sw[m]);
                sc[4 * m + 1] = i8_pair::<1, false>(sw[m]);
                sc[4 * m + 2] = i8_pair::<2, false>(sw[m]);
                sc[4 * m + 3] = i8_pair::<3, false>(sw[m]);
            }
            for k in 0..8 {
                if half == 0 {
                    pf.step();
                }
                // Chunk (ph, q) = elements 128ph + 32q + l: low 4 bits from ql (word 16ph + k
                // for q = 0, 2; 16ph + 8 + k for q = 1, 3), 2 high bits from qh (word
                // 32 + 8ph + k).
                let mut vals = [_mm256_setzero_si256(); 8];
                for ph in 0..2 {
                    let (qla, qlb, qh) = (
                        word(16 * ph + k),
                        word(16 * ph + 8 + k),
                        word(32 + 8 * ph + k),
                    );
                    vals[4 * ph] = _mm256_or_si256(
                        _mm256_and_si256(qla, m4),
                        _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m30),
                    );
                    vals[4 * ph + 1] = _mm256_or_si256(
                        _mm256_and_si256(qlb, m4),
                        _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m30),
                    );
                    vals[4 * ph + 2] = _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(qla), m4),
                        _mm256_and_si256(qh, m30),
                    );
                    vals[4 * ph + 3] = _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(qlb), m4),
                        _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m30),
                    );
                }
                // Scales 2k and 2k + 1 as one i16 pair, for the offset.
                let off_sc = if k % 2 == 0 {
                    i8_pair::<0, true>(sw[k / 2])
                } else {
                    i8_pair::<2, true>(sw[k / 2])
                };
                for t in 0..N {
                    let y = &acts[t][i];
                    let mut lane = _mm256_setzero_si256();
                    for c in 0..8 {
                        let (ph, q) = (c / 4, c % 4);
                        let a = bcast4(&y.qs[128 * ph + 32 * q..128 * ph + 32 * q + 32], k);
                        let s = _mm256_maddubs_epi16(vals[c], a);
                        lane = _mm256_add_epi32(
                            lane,
                            _mm256_madd_epi16(s, sc[8 * ph + 2 * q + k / 4]),
                        );
                    }
                    let bs = (y.bsums[2 * k] as u16 as i32) | ((y.bsums[2 * k + 1] as i32) << 16);
                    let off = _mm256_madd_epi16(off_sc, _mm256_set1_epi32(bs));
                    lane = _mm256_sub_epi32(lane, _mm256_slli_epi32::<5>(off));
                    let d = _mm256_mul_ps(_mm256_set1_ps(y.d), dw);
                    acc[t][h][k] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lane), acc[t][h][k]);
                }
            }
        }
    }
    std::array::from_fn(|t| std::array::from_fn(|h| hsum8_lanes(&acc[t][h])))
}

/// Rows `8 * half..8 * half + 8` of `out` from 8 lanes.
#[inline]
#[target_feature(enable = "avx")]
fn store_half(out: &mut [f32; ROWS], half: usize, v: __m256) {
    // SAFETY: 8 writable floats at 8 * half <= 8; unaligned store.
    unsafe { _mm256_storeu_ps(out[HALF * half..HALF * half + HALF].as_mut_ptr(), v) };
}

/// Entry points of every kernel (`$rows::<N, H>(w, rb, acts, h0)`: halves `h0..h0 + H`).
/// Decode takes both halves in one pass over the blocks, so that all the arithmetic overlaps
/// the stream from memory. 4 tokens take `$halves4` halves a pass: 1 for the kernels with 8
/// lane accumulators per row (they would not fit the registers twice; the second pass reads
/// the group from cache), 2 for Q4_0 and Q4_K.
macro_rules! entry_points {
    ($($a:ty: $rows:ident, $halves4:literal, $one:ident, $four:ident;)*) => {$(
        fn $one(w: &[u8], rb: usize, a: &[$a]) -> [f32; ROWS] {
            #[target_feature(enable = "avx2,fma,f16c")]
            fn inner(w: &[u8], rb: usize, a: &[$a]) -> [f32; ROWS] {
                let [v] = $rows::<1, 2>(w, rb, [a], 0);
                let mut out = [0f32; ROWS];
                for h in 0..2 {
                    store_half(&mut out, h, v[h]);
                }
                out
            }
            // SAFETY: handed out by `packed16` only after `Isa::detect` confirmed AVX2, FMA
            // and F16C.
            unsafe { inner(w, rb, a) }
        }

        fn $four(w: &[u8], rb: usize, a: [&[$a]; 4]) -> [[f32; ROWS]; 4] {
            #[target_feature(enable = "avx2,fma,f16c")]
            fn inner(w: &[u8], rb: usize, a: [&[$a]; 4]) -> [[f32; ROWS]; 4] {
                let mut out = [[0f32; ROWS]; 4];
                for h0 in (0..2).step_by($halves4) {
                    let v = $rows::<4, $halves4>(w, rb, a, h0);
                    for t in 0..4 {
                        for h in 0..$halves4 {
                            store_half(&mut out[t], h0 + h, v[t][h]);
                        }
                    }
                }
                out
            }
            // SAFETY: as above.
            unsafe { inner(w, rb, a) }
        }
    )*};
}

entry_points! {
    BlockQ8: q4_0_rows, 2, q4_0_1, q4_0_4;
    BlockQ8: q8_0_rows, 1, q8_0_1, q8_0_4;
    BlockQ8K: q4_k_rows, 2, q4_k_1, q4_k_4;
    BlockQ8K: q5_k_rows, 1, q5_k_1, q5_k_4;
    BlockQ8K: q6_k_rows, 1, q6_k_1, q6_k_4;
}
