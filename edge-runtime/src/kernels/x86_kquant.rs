//! AVX2 kernels of the K-quants (Q4_K, Q5_K, Q6_K against Q8_K activations). Each computes the
//! same exact integers as its scalar twin in `scalar.rs` (per super-block for Q4_K, per lane of
//! 4-byte groups for Q5_K and Q6_K) and then the same float operations in the same order, so
//! the two agree bit for bit; `simd_kernels_equal_scalar_bit_for_bit` checks that.

// Index loops mirror the scalar twins they reproduce.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::scalar::{mins_dot, scales_mins};
use super::x86_base::{f16_at, hsum_float_8};
use super::BlockQ8K;

#[inline]
#[target_feature(enable = "avx2")]
fn load(p: &[u8]) -> __m256i {
    assert!(p.len() >= 32);
    // SAFETY: 32 readable bytes (asserted); unaligned load.
    unsafe { _mm256_loadu_si256(p.as_ptr().cast()) }
}

#[inline]
#[target_feature(enable = "avx2")]
fn load_i8(p: &[i8]) -> __m256i {
    assert!(p.len() >= 32);
    // SAFETY: 32 readable bytes (asserted); unaligned load.
    unsafe { _mm256_loadu_si256(p.as_ptr().cast()) }
}

/// Sum of the 8 i32 lanes (exact).
#[inline]
#[target_feature(enable = "avx2")]
fn hsum_i32_8(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    _mm_cvtsi128_si32(s)
}

/// `u8 x i8` products summed in pairs (`maddubs`, no saturation for values below 64), then
/// weighted by `scale` and summed in pairs: lane `k` = scale x sum of bytes `4k..4k+3`.
#[inline]
#[target_feature(enable = "avx2")]
fn scaled_lanes(q: __m256i, y: __m256i, scale: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(q, y), scale)
}

/// Q4_K for `N` activation rows at once (the weight block is unpacked once): per row exactly
/// `scalar::dot_q4_k_seq`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_rows<const N: usize>(row: &[u8], acts: [&[BlockQ8K]; N]) -> [f32; N] {
    let nb = row.len() / 144;
    assert!(acts.iter().all(|a| a.len() >= nb));
    let m4 = _mm256_set1_epi8(0x0f);
    let (mut acc, mut acc_min) = ([0f32; N], [0f32; N]);
    for (i, b) in row.chunks_exact(144).enumerate() {
        let (sc, mn) = scales_mins(&b[4..16]);
        let qs = &b[16..];
        let mut nib = [_mm256_setzero_si256(); 8];
        let mut scv = [_mm256_setzero_si256(); 8];
        for j in 0..4 {
            let q = load(&qs[32 * j..]);
            nib[2 * j] = _mm256_and_si256(q, m4);
            nib[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            scv[2 * j] = _mm256_set1_epi16(sc[2 * j] as i16);
            scv[2 * j + 1] = _mm256_set1_epi16(sc[2 * j + 1] as i16);
        }
        let (dw, mw) = (f16_at(b, 0), f16_at(b, 2));
        for k in 0..N {
            let y = &acts[k][i];
            let mut mins = 0i32;
            for j in 0..8 {
                mins += mn[j] * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32);
            }
            let mut sum = _mm256_setzero_si256();
            for j in 0..4 {
                let p_lo = scaled_lanes(nib[2 * j], load_i8(&y.qs[64 * j..]), scv[2 * j]);
                let p_hi = scaled_lanes(
                    nib[2 * j + 1],
                    load_i8(&y.qs[64 * j + 32..]),
                    scv[2 * j + 1],
                );
                sum = _mm256_add_epi32(sum, _mm256_add_epi32(p_lo, p_hi));
            }
            let sum = hsum_i32_8(sum);
            acc[k] = (sum as f32).mul_add(dw * y.d, acc[k]);
            acc_min[k] = (mins as f32).mul_add(mw * y.d, acc_min[k]);
        }
    }
    std::array::from_fn(|k| acc[k] - acc_min[k])
}

/// See `scalar::dot_q4_k_seq`.
pub fn dot_q4_k_seq(row: &[u8], a: &[BlockQ8K]) -> f32 {
    // SAFETY: handed out by `x86::row_dot` only after `Isa::detect` confirmed AVX2, FMA and
    // F16C at run time.
    unsafe { q4_k_rows::<1>(row, [a])[0] }
}

/// Four activation rows of [`dot_q4_k_seq`], for prefill.
pub fn dot4_q4_k_seq(row: &[u8], a: [&[BlockQ8K]; 4]) -> [f32; 4] {
    // SAFETY: as above.
    unsafe { q4_k_rows::<4>(row, a) }
}

/// See `scalar::dot_q5_k`.
pub fn dot_q5_k(row: &[u8], a: &[BlockQ8K]) -> f32 {
    #[target_feature(enable = "avx2,fma,f16c")]
    fn inner(row: &[u8], a: &[BlockQ8K]) -> f32 {
        let m4 = _mm256_set1_epi8(0x0f);
        let one = _mm256_set1_epi8(1);
        let mut acc = _mm256_setzero_ps();
        let mut summs = 0f32;
        for (b, y) in row.chunks_exact(176).zip(a) {
            let d = y.d * f16_at(b, 0);
            let dmin = -y.d * f16_at(b, 2);
            let (sc, mn) = scales_mins(&b[4..16]);
            summs = dmin.mul_add(mins_dot(&mn, y) as f32, summs);
            let qh = load(&b[16..48]);
            let qs = &b[48..];
            let mut lanes = _mm256_setzero_si256();
            for j in 0..4 {
                let q = load(&qs[32 * j..]);
                // Bit 2j (2j + 1) of each qh byte is the fifth bit of the low (high) nibble.
                // (No closure: it would not inherit this function's target features.)
                let h0 =
                    _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * j as i32)), one);
                let h1 = _mm256_and_si256(
                    _mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * j as i32 + 1)),
                    one,
                );
                let lo = _mm256_or_si256(_mm256_and_si256(q, m4), _mm256_slli_epi16(h0, 4));
                let hi = _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                    _mm256_slli_epi16(h1, 4),
                );
                let ylo = load_i8(&y.qs[64 * j..]);
                let yhi = load_i8(&y.qs[64 * j + 32..]);
                let p_lo = scaled_lanes(lo, ylo, _mm256_set1_epi16(sc[2 * j] as i16));
                let p_hi = scaled_lanes(hi, yhi, _mm256_set1_epi16(sc[2 * j + 1] as i16));
                lanes = _mm256_add_epi32(lanes, _mm256_add_epi32(p_lo, p_hi));
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(lanes), acc);
        }
        hsum_float_8(acc) + summs
    }
    // SAFETY: as above.
    unsafe { inner(row, a) }
}

/// Q6_K for `N` activation rows at once (the weight block is unpacked once): per row exactly
/// `scalar::dot_q6_k`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_rows<const N: usize>(row: &[u8], acts: [&[BlockQ8K]; N]) -> [f32; N] {
    let nb = row.len() / 210;
    assert!(acts.iter().all(|a| a.len() >= nb));
    let m4 = _mm256_set1_epi8(0x0f);
    let m2 = _mm256_set1_epi8(0x03);
    let mut acc = [_mm256_setzero_ps(); N];
    for (i, b) in row.chunks_exact(210).enumerate() {
        let dw = f16_at(b, 208);
        let scales = &b[192..208];
        let sc = |i: usize| (scales[i] as i8) as i16;
        // The 8 chunks of 32 unsigned 6-bit values, and the two scales of each chunk.
        let mut vals = [_mm256_setzero_si256(); 8];
        let mut scv = [_mm256_setzero_si256(); 8];
        for h in 0..2 {
            let ql1 = load(&b[64 * h..]);
            let ql2 = load(&b[64 * h + 32..]);
            let qh = load(&b[128 + 32 * h..]);
            let hbits = [
                _mm256_and_si256(qh, m2),
                _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2),
                _mm256_and_si256(_mm256_srli_epi16(qh, 4), m2),
                _mm256_and_si256(_mm256_srli_epi16(qh, 6), m2),
            ];
            let lows = [
                _mm256_and_si256(ql1, m4),
                _mm256_and_si256(ql2, m4),
                _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                _mm256_and_si256(_mm256_srli_epi16(ql2, 4), m4),
            ];
            for q in 0..4 {
                vals[4 * h + q] = _mm256_or_si256(lows[q], _mm256_slli_epi16(hbits[q], 4));
                // Bytes 0..16 of the chunk take one scale, bytes 16..32 the next.
                scv[4 * h + q] = _mm256_set_m128i(
                    _mm_set1_epi16(sc(8 * h + 2 * q + 1)),
                    _mm_set1_epi16(sc(8 * h + 2 * q)),
                );
            }
        }
        // SAFETY: 16 readable bytes (the block's scales); unaligned load.
        let sc16 = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(scales.as_ptr().cast()) });
        for k in 0..N {
            let y = &acts[k][i];
            let mut lanes = _mm256_setzero_si256();
            for c in 0..8 {
                let yv = load_i8(&y.qs[32 * c..]);
                lanes = _mm256_add_epi32(lanes, scaled_lanes(vals[c], yv, scv[c]));
            }
            // The -32 offset: lane m loses 32 x (bsums[2m] sc[2m] + bsums[2m+1] sc[2m+1]).
            // SAFETY: 16 i16 = 32 readable bytes; unaligned load.
            let bsums = unsafe { _mm256_loadu_si256(y.bsums.as_ptr().cast()) };
            let offset = _mm256_slli_epi32(_mm256_madd_epi16(bsums, sc16), 5);
            lanes = _mm256_sub_epi32(lanes, offset);
            let d = _mm256_set1_ps(y.d * dw);
            acc[k] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lanes), acc[k]);
        }
    }
    std::array::from_fn(|k| hsum_float_8(acc[k]))
}

/// See `scalar::dot_q6_k`.
pub fn dot_q6_k(row: &[u8], a: &[BlockQ8K]) -> f32 {
    // SAFETY: as for `dot_q4_k_seq`.
    unsafe { q6_k_rows::<1>(row, [a])[0] }
}

/// Four activation rows of [`dot_q6_k`], for prefill.
pub fn dot4_q6_k(row: &[u8], a: [&[BlockQ8K]; 4]) -> [f32; 4] {
    // SAFETY: as for `dot_q4_k_seq`.
    unsafe { q6_k_rows::<4>(row, a) }
}
