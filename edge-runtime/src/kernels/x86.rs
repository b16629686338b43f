//! AVX2 kernels (x86_64), selected only when `Isa::detect` found AVX2, FMA and F16C. Each one
//! performs the same float operations in the same order as its scalar twin in `scalar.rs`
//! (8 lanes of 4-element integer sums, one FMA per lane and block, ggml's horizontal sum), so
//! the two agree bit for bit; the tests check that.

// Index loops mirror the C intrinsics code they reproduce.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::ahead::AheadLines;
use super::attend::{attend_scalar, scores_per_head, Head, MAX_HEAD_DIM};
use super::x86_base::{f16_at, hsum_float_8};
use super::{BlockQ8, RowDot};
use llama_spec::gguf::GgmlType;

pub fn row_dot(ty: GgmlType) -> Option<RowDot> {
    Some(match ty {
        GgmlType::Q4_0 => RowDot::Q8(dot_q4_0_seq),
        GgmlType::Q4_1 => RowDot::Q8(dot_q4_1),
        GgmlType::Q5_0 => RowDot::Q8(dot_q5_0),
        GgmlType::Q5_1 => RowDot::Q8(dot_q5_1),
        GgmlType::Q8_0 => RowDot::Q8(dot_q8_0),
        GgmlType::F16 => RowDot::F32(dot_f16),
        GgmlType::Q4_K => RowDot::Q8K(super::x86_kquant::dot_q4_k_seq),
        GgmlType::Q5_K => RowDot::Q8K(super::x86_kquant::dot_q5_k),
        GgmlType::Q6_K => RowDot::Q8K(super::x86_kquant::dot_q6_k),
        _ => return None,
    })
}

/// F16 weights against f32 activations, as `ggml_vec_dot_f16` sums (32 FMA lanes, ggml's
/// reduction, a tail in f64): 8 halves widened with F16C per step.
pub(super) fn dot_f16(row: &[u8], a: &[f32]) -> f32 {
    #[target_feature(enable = "avx2,fma,f16c")]
    fn inner(row: &[u8], a: &[f32]) -> f32 {
        let n = a.len().min(row.len() / 2);
        let np = n & !31;
        let mut acc = [_mm256_setzero_ps(); 4];
        for i in (0..np).step_by(32) {
            for (k, acc) in acc.iter_mut().enumerate() {
                let j = i + 8 * k;
                // SAFETY: j + 8 <= np <= n, so 16 bytes of `row` and 8 floats of `a` are
                // readable; unaligned loads.
                let (w, x) = unsafe {
                    (
                        _mm_loadu_si128(row.as_ptr().add(2 * j).cast()),
                        _mm256_loadu_ps(a.as_ptr().add(j)),
                    )
                };
                *acc = _mm256_fmadd_ps(_mm256_cvtph_ps(w), x, *acc);
            }
        }
        // GGML_F32x8_REDUCE: (a0 + a2) + (a1 + a3), halves, then two horizontal adds.
        let y = _mm256_add_ps(_mm256_add_ps(acc[0], acc[2]), _mm256_add_ps(acc[1], acc[3]));
        let t0 = _mm_add_ps(_mm256_castps256_ps128(y), _mm256_extractf128_ps(y, 1));
        let t1 = _mm_hadd_ps(t0, t0);
        let mut sum = f64::from(_mm_cvtss_f32(_mm_hadd_ps(t1, t1)));
        for (i, &x) in a.iter().enumerate().take(n).skip(np) {
            sum += f64::from(f16_at(row, 2 * i) * x);
        }
        sum as f32
    }
    // SAFETY: handed out by `row_dot` only after `Isa::detect` confirmed AVX2, FMA and F16C.
    unsafe { inner(row, a) }
}

/// 16 bytes of nibbles -> 32 bytes: low nibbles first, then high nibbles (element order).
#[inline]
#[target_feature(enable = "avx2")]
fn bytes_from_nibbles_32(qs: &[u8]) -> __m256i {
    assert!(qs.len() >= 16);
    // SAFETY: 16 readable bytes (asserted); unaligned load.
    let tmp = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
    let bytes = _mm256_insertf128_si256(_mm256_castsi128_si256(tmp), _mm_srli_epi16(tmp, 4), 1);
    _mm256_and_si256(_mm256_set1_epi8(0x0f), bytes)
}

/// Byte j = 0xFF where bit j of `qh` is set.
#[inline]
#[target_feature(enable = "avx2")]
fn bytes_from_bits_32(qh: u32) -> __m256i {
    let shuf = _mm256_set_epi64x(
        0x0303_0303_0303_0303,
        0x0202_0202_0202_0202,
        0x0101_0101_0101_0101,
        0,
    );
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(qh as i32), shuf);
    let bits = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    _mm256_cmpeq_epi8(bits, _mm256_set1_epi64x(-1))
}

#[inline]
#[target_feature(enable = "avx2")]
fn load32(p: &[i8; 32]) -> __m256i {
    // SAFETY: a 32-byte array; unaligned load.
    unsafe { _mm256_loadu_si256(p.as_ptr().cast()) }
}

/// Unsigned x signed bytes -> 8 lanes of 4-product sums, as floats.
#[inline]
#[target_feature(enable = "avx2")]
fn mul_sum_us8(ax: __m256i, sy: __m256i) -> __m256 {
    let dot = _mm256_maddubs_epi16(ax, sy);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), dot))
}

/// The shared block loop of the 32-element formats for `N` activation rows at once (the weight
/// block is unpacked once). Per row it performs exactly the scalar twin's operations: one FMA
/// per lane and block, `d = d_w * d_a`, the min term `m_w * s_a` summed separately. A macro so
/// that it expands inside each `#[target_feature]` function.
macro_rules! block_loop {
    ($n:literal, $bs:literal, $signed:literal, $row:expr, $acts:expr, |$b:ident| $unpack:expr) => {{
        let row: &[u8] = $row;
        let acts: [&[BlockQ8]; $n] = $acts;
        let nb = row.len() / $bs;
        assert!(acts.iter().all(|a| a.len() >= nb));
        let mut acc = [_mm256_setzero_ps(); $n];
        let mut summs = [0f32; $n];
        for (i, $b) in row.chunks_exact($bs).enumerate() {
            let (qx, dw, mw): (__m256i, f32, f32) = $unpack;
            // Signed formats use ggml's sign trick; |x| is shared by all rows.
            let ax = if $signed {
                _mm256_sign_epi8(qx, qx)
            } else {
                qx
            };
            for k in 0..$n {
                let y = &acts[k][i];
                summs[k] += mw * y.s;
                let qy = load32(&y.qs);
                let sy = if $signed {
                    _mm256_sign_epi8(qy, qx)
                } else {
                    qy
                };
                let d = _mm256_set1_ps(dw * y.d);
                acc[k] = _mm256_fmadd_ps(d, mul_sum_us8(ax, sy), acc[k]);
            }
        }
        let mut out = [0f32; $n];
        for k in 0..$n {
            out[k] = hsum_float_8(acc[k]) + summs[k];
        }
        out
    }};
}

macro_rules! kernels {
    ($($one:ident, $four:ident, $bs:literal, $signed:literal, |$b:ident| $unpack:expr;)*) => {$(
        fn $one(row: &[u8], a: &[BlockQ8]) -> f32 {
            #[target_feature(enable = "avx2,fma,f16c")]
            fn inner(row: &[u8], a: &[BlockQ8]) -> f32 {
                block_loop!(1, $bs, $signed, row, [a], |$b| $unpack)[0]
            }
            // SAFETY: handed out by `row_dot` only after `Isa::detect` confirmed AVX2, FMA
            // and F16C at run time.
            unsafe { inner(row, a) }
        }
        fn $four(row: &[u8], a: [&[BlockQ8]; 4]) -> [f32; 4] {
            #[target_feature(enable = "avx2,fma,f16c")]
            fn inner(row: &[u8], a: [&[BlockQ8]; 4]) -> [f32; 4] {
                block_loop!(4, $bs, $signed, row, a, |$b| $unpack)
            }
            // SAFETY: as above.
            unsafe { inner(row, a) }
        }
    )*};
}

kernels! {
    dot_q4_1, dot4_q4_1, 20, false, |b| (bytes_from_nibbles_32(&b[4..]), f16_at(b, 0), f16_at(b, 2));
    dot_q5_0, dot4_q5_0, 22, true, |b| {
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let hi = _mm256_andnot_si256(bytes_from_bits_32(qh), _mm256_set1_epi8(0xf0u8 as i8));
        (_mm256_or_si256(bytes_from_nibbles_32(&b[6..]), hi), f16_at(b, 0), 0.0)
    };
    dot_q5_1, dot4_q5_1, 24, false, |b| {
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let hi = _mm256_and_si256(bytes_from_bits_32(qh), _mm256_set1_epi8(0x10));
        (_mm256_or_si256(bytes_from_nibbles_32(&b[8..]), hi), f16_at(b, 0), f16_at(b, 2))
    };
    dot_q8_0, dot4_q8_0, 34, true, |b| {
        let w = &b[2..34];
        // SAFETY: 32 readable bytes (the block's quants); unaligned load.
        (unsafe { _mm256_loadu_si256(w.as_ptr().cast()) }, f16_at(b, 0), 0.0)
    };
}

/// Q4_0 with llama.cpp's repacked-gemv arithmetic (see `scalar::dot_q4_0`): per block the exact
/// integer dot, then one scalar FMA per row.
macro_rules! q4_0_seq {
    ($n:literal, $row:expr, $acts:expr) => {{
        let row: &[u8] = $row;
        let acts: [&[BlockQ8]; $n] = $acts;
        let nb = row.len() / 18;
        assert!(acts.iter().all(|a| a.len() >= nb));
        let mut acc = [0f32; $n];
        for (i, b) in row.chunks_exact(18).enumerate() {
            let qx = _mm256_sub_epi8(bytes_from_nibbles_32(&b[2..]), _mm256_set1_epi8(8));
            let ax = _mm256_sign_epi8(qx, qx);
            let dw = f16_at(b, 0);
            for k in 0..$n {
                let y = &acts[k][i];
                let dot = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(load32(&y.qs), qx));
                let v = _mm256_madd_epi16(_mm256_set1_epi16(1), dot);
                let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
                let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
                let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
                let isum = _mm_cvtsi128_si32(s);
                acc[k] = (isum as f32).mul_add(dw * y.d, acc[k]);
            }
        }
        acc
    }};
}

fn dot_q4_0_seq(row: &[u8], a: &[BlockQ8]) -> f32 {
    #[target_feature(enable = "avx2,fma,f16c")]
    fn inner(row: &[u8], a: &[BlockQ8]) -> f32 {
        q4_0_seq!(1, row, [a])[0]
    }
    // SAFETY: handed out only after `Isa::detect` confirmed AVX2, FMA and F16C.
    unsafe { inner(row, a) }
}

fn dot4_q4_0_seq(row: &[u8], a: [&[BlockQ8]; 4]) -> [f32; 4] {
    #[target_feature(enable = "avx2,fma,f16c")]
    fn inner(row: &[u8], a: [&[BlockQ8]; 4]) -> [f32; 4] {
        q4_0_seq!(4, row, a)
    }
    // SAFETY: as above.
    unsafe { inner(row, a) }
}

/// Q4_0 for 8 weight rows against one activation row, with llama.cpp's repacked-gemv
/// arithmetic per row (`scalar::dot_q4_0`): the 8 rows' exact block dots are reduced into the
/// 8 lanes of one vector (a `hadd` tree instead of 8 horizontal sums) and each lane takes one
/// FMA per block, `acc_r = fma(isum_r, d_r * d_a, acc_r)`, in block order: bit for bit the
/// scalar twin, row by row.
fn dot8_q4_0_seq(rows: [&[u8]; 8], a: &[BlockQ8]) -> [f32; 8] {
    #[target_feature(enable = "avx2,fma,f16c")]
    fn inner(rows: [&[u8]; 8], a: &[BlockQ8]) -> [f32; 8] {
        let nb = rows[0].len() / 18;
        assert!(rows.iter().all(|r| r.len() == nb * 18) && a.len() >= nb);
        let ones = _mm256_set1_epi16(1);
        let eight = _mm256_set1_epi8(8);
        let mut acc = _mm256_setzero_ps();
        let mut v = [_mm256_setzero_si256(); 8];
        let mut dw = [0f32; 8];
        // The next 8 rows (adjacent in the matrix, where there are any) are prefetched while
        // these are read: short rows read 8 at a time defeat the hardware prefetcher.
        let next = rows[7].as_ptr().wrapping_add(rows[7].len());
        let lines = (8 * nb * 18).div_ceil(64);
        for i in 0..nb {
            for l in i * lines / nb..(i + 1) * lines / nb {
                super::prefetch::weights(next.wrapping_add(64 * l));
            }
            let y = &a[i];
            let qy = load32(&y.qs);
            for r in 0..8 {
                let b = &rows[r][i * 18..(i + 1) * 18];
                let qx = _mm256_sub_epi8(bytes_from_nibbles_32(&b[2..]), eight);
                let dot = _mm256_maddubs_epi16(_mm256_sign_epi8(qx, qx), _mm256_sign_epi8(qy, qx));
                v[r] = _mm256_madd_epi16(ones, dot);
                dw[r] = f16_at(b, 0);
            }
            // Lane r of `s` = the sum of v[r]'s 8 lanes (exact integers).
            let h0123 =
                _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
            let h4567 =
                _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
            let s = _mm256_add_epi32(
                _mm256_permute2x128_si256(h0123, h4567, 0x20),
                _mm256_permute2x128_si256(h0123, h4567, 0x31),
            );
            // SAFETY: 8 readable floats; unaligned load.
            let d = _mm256_mul_ps(unsafe { _mm256_loadu_ps(dw.as_ptr()) }, _mm256_set1_ps(y.d));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, acc);
        }
        let mut out = [0f32; 8];
        // SAFETY: 8 writable floats; unaligned store.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), acc) };
        out
    }
    // SAFETY: handed out only after `Isa::detect` confirmed AVX2, FMA and F16C.
    unsafe { inner(rows, a) }
}

/// Q4_0 for a tile of 4 weight rows x 4 activation rows (prefill): each unpacked weight block
/// serves 4 activation rows, and each activation block 4 weight rows; per activation row the
/// 4 rows' exact block dots are reduced into one 128-bit vector, two activation rows make one
/// 8-lane FMA per block. Lane (t, r) computes `acc = fma(isum, d_r * d_t, acc)` in block order:
/// bit for bit the scalar twin. Returns `out[t][r]`.
fn tile4x4_q4_0_seq(rows: [&[u8]; 4], acts: [&[BlockQ8]; 4]) -> [[f32; 4]; 4] {
    #[target_feature(enable = "avx2,fma,f16c")]
    fn inner(rows: [&[u8]; 4], acts: [&[BlockQ8]; 4]) -> [[f32; 4]; 4] {
        let nb = rows[0].len() / 18;
        assert!(rows.iter().all(|r| r.len() == nb * 18) && acts.iter().all(|a| a.len() >= nb));
        let ones = _mm256_set1_epi16(1);
        let eight = _mm256_set1_epi8(8);
        // Lanes 0..4: rows 0..4 of activation row 0 (or 2); lanes 4..8: of row 1 (or 3).
        let mut acc01 = _mm256_setzero_ps();
        let mut acc23 = _mm256_setzero_ps();
        let mut ax = [_mm256_setzero_si256(); 4];
        let mut qx = [_mm256_setzero_si256(); 4];
        let mut dw = [0f32; 4];
        for i in 0..nb {
            for r in 0..4 {
                let b = &rows[r][i * 18..(i + 1) * 18];
                qx[r] = _mm256_sub_epi8(bytes_from_nibbles_32(&b[2..]), eight);
                ax[r] = _mm256_sign_epi8(qx[r], qx[r]);
                dw[r] = f16_at(b, 0);
            }
            // SAFETY: 4 readable floats; unaligned load.
            let dw4 = unsafe { _mm_loadu_ps(dw.as_ptr()) };
            let dw8 = _mm256_set_m128(dw4, dw4);
            let mut sums = [_mm_setzero_si128(); 4];
            for t in 0..4 {
                let qy = load32(&acts[t][i].qs);
                let mut v = [_mm256_setzero_si256(); 4];
                for r in 0..4 {
                    let dot = _mm256_maddubs_epi16(ax[r], _mm256_sign_epi8(qy, qx[r]));
                    v[r] = _mm256_madd_epi16(ones, dot);
                }
                let h =
                    _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
                sums[t] = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
            }
            let da01 = _mm256_set_m128(_mm_set1_ps(acts[1][i].d), _mm_set1_ps(acts[0][i].d));
            let da23 = _mm256_set_m128(_mm_set1_ps(acts[3][i].d), _mm_set1_ps(acts[2][i].d));
            let s01 = _mm256_cvtepi32_ps(_mm256_set_m128i(sums[1], sums[0]));
            let s23 = _mm256_cvtepi32_ps(_mm256_set_m128i(sums[3], sums[2]));
            acc01 = _mm256_fmadd_ps(s01, _mm256_mul_ps(dw8, da01), acc01);
            acc23 = _mm256_fmadd_ps(s23, _mm256_mul_ps(dw8, da23), acc23);
        }
        let mut out = [[0f32; 4]; 4];
        let mut flat = [0f32; 16];
        // SAFETY: 16 writable floats; unaligned stores.
        unsafe {
            _mm256_storeu_ps(flat.as_mut_ptr(), acc01);
            _mm256_storeu_ps(flat.as_mut_ptr().add(8), acc23);
        }
        for t in 0..4 {
            out[t].copy_from_slice(&flat[4 * t..4 * t + 4]);
        }
        out
    }
    // SAFETY: handed out only after `Isa::detect` confirmed AVX2, FMA and F16C.
    unsafe { inner(rows, acts) }
}

/// A 4 weight rows x 4 activation rows tile kernel, where one exists (prefill).
pub fn tile4x4(ty: GgmlType) -> Option<super::Tile4x4> {
    Some(match ty {
        GgmlType::Q4_0 => tile4x4_q4_0_seq,
        _ => return None,
    })
}

/// Eight weight rows at once (one activation row), where a kernel exists.
pub fn row_dot8(ty: GgmlType) -> Option<super::RowDot8> {
    Some(match ty {
        GgmlType::Q4_0 => dot8_q4_0_seq,
        _ => return None,
    })
}

/// Four activation rows at once, for prefill.
pub fn row_dot4(ty: GgmlType) -> Option<super::Dot4> {
    use super::Dot4;
    Some(match ty {
        GgmlType::Q4_0 => Dot4::Q8(dot4_q4_0_seq),
        GgmlType::Q4_1 => Dot4::Q8(dot4_q4_1),
        GgmlType::Q5_0 => Dot4::Q8(dot4_q5_0),
        GgmlType::Q5_1 => Dot4::Q8(dot4_q5_1),
        GgmlType::Q8_0 => Dot4::Q8(dot4_q8_0),
        GgmlType::Q4_K => Dot4::Q8K(super::x86_kquant::dot4_q4_k_seq),
        GgmlType::Q6_K => Dot4::Q8K(super::x86_kquant::dot4_q6_k),
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Attention and activation helpers (same operations as ggml_math.rs / attention.rs).

/// ggml's `ggml_v_expf` for AVX2+FMA.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn v_expf(x: __m256) -> __m256 {
    let r = _mm256_set1_ps(12_582_912.0);
    let z = _mm256_fmadd_ps(x, _mm256_set1_ps(f32::from_bits(0x3fb8_aa3b)), r);
    let n = _mm256_sub_ps(z, r);
    let b = _mm256_fnmadd_ps(
        n,
        _mm256_set1_ps(f32::from_bits(0x35bf_be8e)),
        _mm256_fnmadd_ps(n, _mm256_set1_ps(f32::from_bits(0x3f31_7200)), x),
    );
    let e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
    let k = _mm256_castsi256_ps(_mm256_add_epi32(
        e,
        _mm256_castps_si256(_mm256_set1_ps(1.0)),
    ));
    let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
    let c = _mm256_castps_si256(_mm256_cmp_ps(abs_n, _mm256_set1_ps(126.0), _CMP_GT_OQ));
    let u = _mm256_mul_ps(b, b);
    let j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(
            _mm256_fmadd_ps(
                _mm256_set1_ps(f32::from_bits(0x3c07_2010)),
                b,
                _mm256_set1_ps(f32::from_bits(0x3d2b_9f17)),
            ),
            u,
            _mm256_fmadd_ps(
                _mm256_set1_ps(f32::from_bits(0x3e2a_af33)),
                b,
                _mm256_set1_ps(f32::from_bits(0x3eff_fedb)),
            ),
        ),
        u,
        _mm256_mul_ps(_mm256_set1_ps(f32::from_bits(0x3f7f_fff6)), b),
    );
    if _mm256_movemask_ps(_mm256_castsi256_ps(c)) == 0 {
        return _mm256_fmadd_ps(j, k, k);
    }
    let g = _mm256_and_si256(
        _mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
        _mm256_set1_epi32(0x8200_0000u32 as i32),
    );
    let s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f00_0000)));
    let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    let d = _mm256_castps_si256(_mm256_cmp_ps(abs_n, _mm256_set1_ps(192.0), _CMP_GT_OQ));
    _mm256_or_ps(
        _mm256_and_ps(_mm256_castsi256_ps(d), _mm256_mul_ps(s1, s1)),
        _mm256_andnot_ps(
            _mm256_castsi256_ps(d),
            _mm256_or_ps(
                _mm256_and_ps(
                    _mm256_castsi256_ps(c),
                    _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1),
                ),
                _mm256_andnot_ps(_mm256_castsi256_ps(c), _mm256_fmadd_ps(k, j, k)),
            ),
        ),
    )
}

/// `x = silu(x) * g` (ggml's `ggml_vec_swiglu_f32`).
pub fn swiglu(x: &mut [f32], g: &[f32]) {
    // SAFETY: only called when `Isa::detect` found AVX2, FMA and F16C.
    unsafe { swiglu_avx2(x, g) }
}

#[target_feature(enable = "avx2,fma")]
fn swiglu_avx2(x: &mut [f32], g: &[f32]) {
    assert!(g.len() >= x.len());
    let whole = x.len() / 8 * 8;
    for i in (0..whole).step_by(8) {
        // SAFETY: i + 8 <= whole <= len of both slices (asserted); unaligned loads/stores.
        unsafe {
            let v = _mm256_loadu_ps(x.as_ptr().add(i));
            let e = v_expf(_mm256_sub_ps(_mm256_setzero_ps(), v));
            let s = _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0), e));
            _mm256_storeu_ps(
                x.as_mut_ptr().add(i),
                _mm256_mul_ps(s, _mm256_loadu_ps(g.as_ptr().add(i))),
            );
        }
    }
    for i in whole..x.len() {
        x[i] = x[i] / (1.0 + (-x[i]).exp()) * g[i];
    }
}

/// 8 f16 values -> f32.
#[inline]
#[target_feature(enable = "avx2,f16c")]
fn load_f16x8(p: &[half::f16]) -> __m256 {
    assert!(p.len() >= 8);
    // SAFETY: 8 readable f16 values (asserted); unaligned load.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.as_ptr().cast())) }
}

/// `GGML_F32x8_REDUCE` of four 8-lane accumulators.
#[inline]
#[target_feature(enable = "avx2")]
fn reduce4(a: [__m256; 4]) -> f32 {
    let x0 = _mm256_add_ps(a[0], a[2]);
    let x1 = _mm256_add_ps(a[1], a[3]);
    let x0 = _mm256_add_ps(x0, x1);
    let t0 = _mm_add_ps(_mm256_castps256_ps128(x0), _mm256_extractf128_ps(x0, 1));
    let t1 = _mm_hadd_ps(t0, t0);
    _mm_cvtss_f32(_mm_hadd_ps(t1, t1))
}

/// One token's attention for query heads that share a K/V head, head by head; see
/// `attend::attend_scalar` for the definition. `ahead`: lines of the next weights, one
/// prefetched per position and pass.
pub(crate) fn attend(h: &Head, scores: &mut [f32], out: &mut [f32], ahead: &mut AheadLines) {
    let (hd, per) = (h.head_dim, scores_per_head(scores, h));
    for j in 0..h.heads() {
        // SAFETY: only called when `Isa::detect` found AVX2, FMA and F16C.
        unsafe {
            attend_avx2(
                &h.one(j),
                &mut scores[j * per..(j + 1) * per],
                &mut out[j * hd..(j + 1) * hd],
                ahead,
            )
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn attend_avx2(h: &Head, scores: &mut [f32], out: &mut [f32], ahead: &mut AheadLines) {
    let hd = h.q.len();
    if !hd.is_multiple_of(32) {
        // The f16 dot's scalar tail (double precision) is rare enough to leave to the reference.
        return attend_scalar(h, scores, out);
    }
    let nv = hd / 8;
    // Q rounded to f16, as 8-lane vectors.
    let mut q = [_mm256_setzero_ps(); MAX_HEAD_DIM / 8];
    for (i, qv) in q[..nv].iter_mut().enumerate() {
        // SAFETY: i*8 + 8 <= hd = q.len(); unaligned load.
        let v = unsafe { _mm256_loadu_ps(h.q.as_ptr().add(8 * i)) };
        *qv = _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    }
    let n_kv = h.n_kv;
    let padded = n_kv.div_ceil(8) * 8;
    scores[n_kv..padded].fill(f32::NEG_INFINITY);
    let mut max = f32::NEG_INFINITY;
    for p in 0..n_kv {
        ahead.one();
        let kr = &h.k_cache[p * h.head_dim..][..hd];
        let mut acc = [_mm256_setzero_ps(); 4];
        for i in (0..nv).step_by(4) {
            for (j, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(load_f16x8(&kr[8 * (i + j)..]), q[i + j], *a);
            }
        }
        let s = reduce4(acc) * h.scale;
        scores[p] = s;
        max = max.max(s);
    }
    softmax_f16_probs(scores, n_kv, max);
    // Probabilities · V: lane p % 32, vectorized over output dimensions.
    // hd is a multiple of 32 (above) and at most MAX_HEAD_DIM.
    match nv {
        4 => prob_v::<4>(h, scores, out, ahead),
        8 => prob_v::<8>(h, scores, out, ahead),
        12 => prob_v::<12>(h, scores, out, ahead),
        16 => prob_v::<16>(h, scores, out, ahead),
        20 => prob_v::<20>(h, scores, out, ahead),
        24 => prob_v::<24>(h, scores, out, ahead),
        28 => prob_v::<28>(h, scores, out, ahead),
        _ => prob_v::<32>(h, scores, out, ahead),
    }
}

/// Scores `0..n_kv` (their maximum `max`; `scores` padded with -inf to a multiple of 8) to
/// probabilities rounded to f16, as ggml's softmax: vector `expf` of 8 lanes, each 8-lane
/// sum added into a double.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn softmax_f16_probs(scores: &mut [f32], n_kv: usize, max: f32) {
    let padded = n_kv.div_ceil(8) * 8;
    assert!(scores.len() >= padded);
    let mut sum = 0f64;
    for c in (0..padded).step_by(8) {
        // SAFETY: c + 8 <= padded <= scores.len(); unaligned load/store.
        unsafe {
            let v = v_expf(_mm256_sub_ps(
                _mm256_loadu_ps(scores.as_ptr().add(c)),
                _mm256_set1_ps(max),
            ));
            _mm256_storeu_ps(scores.as_mut_ptr().add(c), v);
            let mut r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
            r = _mm_add_ps(r, _mm_movehl_ps(r, r));
            r = _mm_add_ss(r, _mm_movehdup_ps(r));
            sum += f64::from(_mm_cvtss_f32(r));
        }
    }
    let inv = _mm256_set1_ps((1.0 / sum) as f32);
    for c in (0..padded).step_by(8) {
        // SAFETY: as above.
        unsafe {
            let v = _mm256_mul_ps(_mm256_loadu_ps(scores.as_ptr().add(c)), inv);
            let r = _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
            _mm256_storeu_ps(scores.as_mut_ptr().add(c), r);
        }
    }
}

/// `out = sum_p probs[p] * V[p]` in ggml's f16-dot layout: position `p` goes to lane `p % 32`
/// (FMAs in position order per lane), lanes reduced as `reduce32`. One lane at a time, its
/// `NV = hd / 8` accumulators in registers (a constant, so that they can be).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn prob_v<const NV: usize>(h: &Head, probs: &[f32], out: &mut [f32], ahead: &mut AheadLines) {
    let hd = h.q.len();
    assert!(hd == 8 * NV && out.len() >= hd && probs.len() >= h.n_kv);
    let mut lanes = [[_mm256_setzero_ps(); NV]; 32];
    for (l, lane) in lanes.iter_mut().enumerate() {
        let mut acc = [_mm256_setzero_ps(); NV];
        for p in (l..h.n_kv).step_by(32) {
            ahead.one();
            let w = _mm256_set1_ps(probs[p]);
            let vr = &h.v_cache[p * h.head_dim..][..hd];
            for (i, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(load_f16x8(&vr[8 * i..]), w, *a);
            }
        }
        *lane = acc;
    }
    for i in 0..NV {
        let mut y = [_mm256_setzero_ps(); 8];
        for (l, y) in y.iter_mut().enumerate() {
            *y = _mm256_add_ps(
                _mm256_add_ps(lanes[l][i], lanes[16 + l][i]),
                _mm256_add_ps(lanes[8 + l][i], lanes[24 + l][i]),
            );
        }
        let t = [
            _mm256_add_ps(y[0], y[4]),
            _mm256_add_ps(y[1], y[5]),
            _mm256_add_ps(y[2], y[6]),
            _mm256_add_ps(y[3], y[7]),
        ];
        let r = _mm256_add_ps(_mm256_add_ps(t[0], t[1]), _mm256_add_ps(t[2], t[3]));
        // SAFETY: 8 * i + 8 <= hd <= out.len(); unaligned store.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(8 * i), r) };
    }
}

/// `quantize_q8` with AVX2 (ggml's `quantize_row_q8_0`/`q8_1` on AVX2): same results.
pub fn quantize_q8(x: &[f32], out: &mut [BlockQ8]) {
    // SAFETY: only called when `Isa::detect` found AVX2, FMA and F16C.
    unsafe { quantize_q8_avx2(x, out) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_q8_avx2(x: &[f32], out: &mut [BlockQ8]) {
    for (xb, b) in x.chunks_exact(32).zip(out.iter_mut()) {
        // SAFETY: 32 floats per chunk; unaligned loads.
        let v: [__m256; 4] =
            std::array::from_fn(|i| unsafe { _mm256_loadu_ps(xb.as_ptr().add(8 * i)) });
        let sign = _mm256_set1_ps(-0.0);
        let mut m = _mm256_andnot_ps(sign, v[0]);
        for vi in &v[1..] {
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, *vi));
        }
        let mut m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        let amax = _mm_cvtss_f32(m4);
        let d = amax / 127.0;
        let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
        let mut sum = _mm256_setzero_si256();
        let mut q = [0i32; 32];
        for (i, vi) in v.iter().enumerate() {
            let r = _mm256_round_ps(
                _mm256_mul_ps(*vi, id),
                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
            );
            let iv = _mm256_cvtps_epi32(r);
            sum = _mm256_add_epi32(sum, iv);
            // SAFETY: 8 i32 at offset 8*i of a 32-element array; unaligned store.
            unsafe { _mm256_storeu_si256(q.as_mut_ptr().add(8 * i).cast(), iv) };
        }
        for (o, &v) in b.qs.iter_mut().zip(&q) {
            *o = v as i8;
        }
        let s = _mm_add_epi32(
            _mm256_castsi256_si128(sum),
            _mm256_extracti128_si256(sum, 1),
        );
        let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
        let total = _mm_cvtsi128_si32(s);
        b.d = half::f16::from_f32(d).to_f32();
        b.s = half::f16::from_f32(d * total as f32).to_f32();
        b.sum = total;
    }
}
