//! NEON kernels (aarch64, where NEON is always present). Each forms the same exact integers
//! as its scalar twin in `scalar.rs` (per block for Q4_0 and per super-block for Q4_K; per lane
//! of 4-byte groups, ggml's AVX2 lane layout, for the others) and then the same float
//! operations in the same order, so the two agree bit for bit on every machine;
//! `simd_kernels_equal_scalar_bit_for_bit` checks that (under qemu-aarch64 in CI).
//!
//! Products use baseline NEON (`smull` and pairwise adds); the `sdot` instruction of ARMv8.2
//! would be faster, but its intrinsic is not stable Rust yet.

// Index loops mirror the scalar twins they reproduce.
#![allow(clippy::needless_range_loop)]

use std::arch::aarch64::*;

use super::scalar::{mins_dot, scales_mins};
use super::{f16, BlockQ8, BlockQ8K, RowDot};
use llama_spec::gguf::GgmlType;

pub fn row_dot(ty: GgmlType) -> Option<RowDot> {
    Some(match ty {
        GgmlType::Q4_0 => RowDot::Q8(dot_q4_0),
        GgmlType::Q4_1 => RowDot::Q8(dot_q4_1),
        GgmlType::Q5_0 => RowDot::Q8(dot_q5_0),
        GgmlType::Q5_1 => RowDot::Q8(dot_q5_1),
        GgmlType::Q8_0 => RowDot::Q8(dot_q8_0),
        GgmlType::Q4_K => RowDot::Q8K(dot_q4_k_seq),
        GgmlType::Q5_K => RowDot::Q8K(dot_q5_k),
        GgmlType::Q6_K => RowDot::Q8K(dot_q6_k),
        _ => return None,
    })
}

/// 16 bytes from `p` (at least 16 long).
#[inline]
#[target_feature(enable = "neon")]
fn ld_u8(p: &[u8]) -> uint8x16_t {
    assert!(p.len() >= 16);
    // SAFETY: 16 readable bytes (asserted).
    unsafe { vld1q_u8(p.as_ptr()) }
}

#[inline]
#[target_feature(enable = "neon")]
fn ld_i8(p: &[i8]) -> int8x16_t {
    assert!(p.len() >= 16);
    // SAFETY: 16 readable bytes (asserted).
    unsafe { vld1q_s8(p.as_ptr()) }
}

/// Lane `k` = the exact sum of the products of bytes `4k..4k+4`.
#[inline]
#[target_feature(enable = "neon")]
fn dot4(a: int8x16_t, b: int8x16_t) -> int32x4_t {
    // Products fit i16 and pairs of them too (|a|, |b| <= 128, never both -128 here).
    let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    let hi = vmull_high_s8(a, b);
    vpaddlq_s16(vpaddq_s16(lo, hi))
}

/// Bits `8h..8h+16` of `qh`, one per byte, as 0 or 16 (the fifth bit of Q5 values).
#[inline]
#[target_feature(enable = "neon")]
fn fifth_bits16(qh: u32, h: u32) -> uint8x16_t {
    const BITS: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    let b = vcombine_u8(
        vdup_n_u8((qh >> (8 * h)) as u8),
        vdup_n_u8((qh >> (8 * h + 8)) as u8),
    );
    vandq_u8(vtstq_u8(b, ld_u8(&BITS)), vdupq_n_u8(16))
}

/// The low and high nibbles of 16 bytes: elements 0..16 and 16..32 of a 32-element block.
#[inline]
#[target_feature(enable = "neon")]
fn nibbles(qs: &[u8]) -> (uint8x16_t, uint8x16_t) {
    let q = ld_u8(qs);
    (vandq_u8(q, vdupq_n_u8(0x0f)), vshrq_n_u8::<4>(q))
}

/// ggml's 8-lane block loop (`scalar::blocks_8lane`): per block the 32 signed weights
/// `$unpack` gives, lanes 0..4 and 4..8 of exact 4-element sums, one FMA per lane by
/// `d_w * d_a`, ggml's horizontal sum, and the offset term `m_w * s_a` summed apart. A macro
/// so that it expands inside each `#[target_feature]` function (closures would not inherit it).
macro_rules! blocks_8lane {
    ($bs:literal, $row:expr, $a:expr, |$b:ident| $unpack:expr) => {{
        let (row, a): (&[u8], &[BlockQ8]) = ($row, $a);
        let nb = row.len() / $bs;
        assert!(a.len() >= nb);
        let (mut acc0, mut acc1) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
        let mut offsets = 0f32;
        for ($b, y) in row.chunks_exact($bs).zip(a) {
            let (w0, w1, d, m): (int8x16_t, int8x16_t, f32, f32) = $unpack;
            offsets += m * y.s;
            let dd = vdupq_n_f32(d * y.d);
            let l0 = dot4(w0, ld_i8(&y.qs[..16]));
            let l1 = dot4(w1, ld_i8(&y.qs[16..]));
            acc0 = vfmaq_f32(acc0, vcvtq_f32_s32(l0), dd);
            acc1 = vfmaq_f32(acc1, vcvtq_f32_s32(l1), dd);
        }
        hsum8(acc0, acc1) + offsets
    }};
}

/// `ggml_math::hsum8` of lanes 0..4 in `a`, 4..8 in `b`: (k + k+4), then (0 + 2) + (1 + 3).
#[inline]
#[target_feature(enable = "neon")]
fn hsum8(a: float32x4_t, b: float32x4_t) -> f32 {
    let r = vaddq_f32(a, b);
    (vgetq_lane_f32::<0>(r) + vgetq_lane_f32::<2>(r))
        + (vgetq_lane_f32::<1>(r) + vgetq_lane_f32::<3>(r))
}

fn dot_q4_1(row: &[u8], a: &[BlockQ8]) -> f32 {
    // SAFETY: NEON is present (`Isa::detect` checked it before handing out these kernels).
    unsafe { dot_q4_1_neon(row, a) }
}

#[target_feature(enable = "neon")]
fn dot_q4_1_neon(row: &[u8], a: &[BlockQ8]) -> f32 {
    blocks_8lane!(20, row, a, |b| {
        let (lo, hi) = nibbles(&b[4..20]);
        (
            vreinterpretq_s8_u8(lo),
            vreinterpretq_s8_u8(hi),
            f16(b, 0),
            f16(b, 2),
        )
    })
}

fn dot_q5_0(row: &[u8], a: &[BlockQ8]) -> f32 {
    // SAFETY: NEON is present (`Isa::detect` checked it before handing out these kernels).
    unsafe { dot_q5_0_neon(row, a) }
}

#[target_feature(enable = "neon")]
fn dot_q5_0_neon(row: &[u8], a: &[BlockQ8]) -> f32 {
    blocks_8lane!(22, row, a, |b| {
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        let (lo, hi) = nibbles(&b[6..22]);
        let sixteen = vdupq_n_s8(16);
        let w0 = vsubq_s8(
            vreinterpretq_s8_u8(vorrq_u8(lo, fifth_bits16(qh, 0))),
            sixteen,
        );
        let w1 = vsubq_s8(
            vreinterpretq_s8_u8(vorrq_u8(hi, fifth_bits16(qh, 2))),
            sixteen,
        );
        (w0, w1, f16(b, 0), 0.0)
    })
}

fn dot_q5_1(row: &[u8], a: &[BlockQ8]) -> f32 {
    // SAFETY: NEON is present (`Isa::detect` checked it before handing out these kernels).
    unsafe { dot_q5_1_neon(row, a) }
}

#[target_feature(enable = "neon")]
fn dot_q5_1_neon(row: &[u8], a: &[BlockQ8]) -> f32 {
    blocks_8lane!(24, row, a, |b| {
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        let (lo, hi) = nibbles(&b[8..24]);
        let w0 = vreinterpretq_s8_u8(vorrq_u8(lo, fifth_bits16(qh, 0)));
        let w1 = vreinterpretq_s8_u8(vorrq_u8(hi, fifth_bits16(qh, 2)));
        (w0, w1, f16(b, 0), f16(b, 2))
    })
}

fn dot_q8_0(row: &[u8], a: &[BlockQ8]) -> f32 {
    // SAFETY: NEON is present (`Isa::detect` checked it before handing out these kernels).
    unsafe { dot_q8_0_neon(row, a) }
}

#[target_feature(enable = "neon")]
fn dot_q8_0_neon(row: &[u8], a: &[BlockQ8]) -> f32 {
    blocks_8lane!(34, row, a, |b| {
        let w0 = vreinterpretq_s8_u8(ld_u8(&b[2..18]));
        let w1 = vreinterpretq_s8_u8(ld_u8(&b[18..34]));
        (w0, w1, f16(b, 0), 0.0)
    })
}

/// See `scalar::dot_q4_0`: per block the exact integer dot, then one FMA.
fn dot_q4_0(row: &[u8], a: &[BlockQ8]) -> f32 {
    // SAFETY: NEON is present (`Isa::detect` checked it before handing out these kernels).
    unsafe { dot_q4_0_neon(row, a) }
}

#[target_feature(enable = "neon")]
fn dot_q4_0_neon(row: &[u8], a: &[BlockQ8]) -> f32 {
    let nb = row.len() / 18;
    assert!(a.len() >= nb);
    let mut acc = 0f32;
    let eight = vdupq_n_s8(8);
    for (b, y) in row.chunks_exact(18).zip(a) {
        let (lo, hi) = nibbles(&b[2..18]);
        let w0 = vsubq_s8(vreinterpretq_s8_u8(lo), eight);
        let w1 = vsubq_s8(vreinterpretq_s8_u8(hi), eight);
        let l = vaddq_s32(dot4(w0, ld_i8(&y.qs[..16])), dot4(w1, ld_i8(&y.qs[16..])));
        let isum = vaddvq_s32(l);
        acc = (isum as f32).mul_add(f16(b, 0) * y.d, acc);
    }
    acc
}

/// The exact sum of 32 products of unsigned weights (below 128) and activations.
#[inline]
#[target_feature(enable = "neon")]
fn isum32(w0: uint8x16_t, w1: uint8x16_t, y: &[i8]) -> int32x4_t {
    vaddq_s32(
        dot4(vreinterpretq_s8_u8(w0), ld_i8(&y[..16])),
        dot4(vreinterpretq_s8_u8(w1), ld_i8(&y[16..32])),
    )
}

/// See `scalar::dot_q4_k_seq`.
fn dot_q4_k_seq(row: &[u8], a: &[BlockQ8K]) -> f32 {
    // SAFETY: NEON is present (`Isa::detect` checked it before handing out these kernels).
    unsafe { dot_q4_k_seq_neon(row, a) }
}

#[target_feature(enable = "neon")]
fn dot_q4_k_seq_neon(row: &[u8], a: &[BlockQ8K]) -> f32 {
    let (mut acc, mut acc_min) = (0f32, 0f32);
    assert!(a.len() >= row.len() / 144);
    let m4 = vdupq_n_u8(0x0f);
    for (b, y) in row.chunks_exact(144).zip(a) {
        let (sc, mn) = scales_mins(&b[4..16]);
        let mut mins = 0i32;
        for j in 0..8 {
            mins += mn[j] * (y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32);
        }
        let qs = &b[16..];
        let mut sum = 0i32;
        for j in 0..4 {
            let (q0, q1) = (ld_u8(&qs[32 * j..]), ld_u8(&qs[32 * j + 16..]));
            let lo = isum32(vandq_u8(q0, m4), vandq_u8(q1, m4), &y.qs[64 * j..]);
            let hi = isum32(
                vshrq_n_u8::<4>(q0),
                vshrq_n_u8::<4>(q1),
                &y.qs[64 * j + 32..],
            );
            sum += sc[2 * j] * vaddvq_s32(lo) + sc[2 * j + 1] * vaddvq_s32(hi);
        }
        acc = (sum as f32).mul_add(f16(b, 0) * y.d, acc);
        acc_min = (mins as f32).mul_add(f16(b, 2) * y.d, acc_min);
    }
    acc - acc_min
}

/// `scalar::k_lanes`: one FMA per lane by `d`.
#[inline]
#[target_feature(enable = "neon")]
fn k_lanes(acc: &mut [float32x4_t; 2], d: f32, lanes: [int32x4_t; 2]) {
    let dv = vdupq_n_f32(d);
    acc[0] = vfmaq_f32(acc[0], vcvtq_f32_s32(lanes[0]), dv);
    acc[1] = vfmaq_f32(acc[1], vcvtq_f32_s32(lanes[1]), dv);
}

/// See `scalar::dot_q5_k`.
fn dot_q5_k(row: &[u8], a: &[BlockQ8K]) -> f32 {
    // SAFETY: NEON is present (`Isa::detect` checked it before handing out these kernels).
    unsafe { dot_q5_k_neon(row, a) }
}

#[target_feature(enable = "neon")]
fn dot_q5_k_neon(row: &[u8], a: &[BlockQ8K]) -> f32 {
    assert!(a.len() >= row.len() / 176);
    let m4 = vdupq_n_u8(0x0f);
    let mut acc = [vdupq_n_f32(0.0); 2];
    let mut summs = 0f32;
    for (b, y) in row.chunks_exact(176).zip(a) {
        let d = y.d * f16(b, 0);
        let dmin = -y.d * f16(b, 2);
        let (sc, mn) = scales_mins(&b[4..16]);
        summs = dmin.mul_add(mins_dot(&mn, y) as f32, summs);
        let (qh0, qh1) = (ld_u8(&b[16..32]), ld_u8(&b[32..48]));
        let qs = &b[48..];
        let mut lanes = [vdupq_n_s32(0); 2];
        for j in 0..4 {
            let (q0, q1) = (ld_u8(&qs[32 * j..]), ld_u8(&qs[32 * j + 16..]));
            // Bit 2j (2j + 1) of each qh byte is the fifth bit of the low (high) nibble.
            let (blo, bhi) = (vdupq_n_u8(1 << (2 * j)), vdupq_n_u8(2 << (2 * j)));
            let h = |qh: uint8x16_t, bit: uint8x16_t| vandq_u8(vtstq_u8(qh, bit), vdupq_n_u8(16));
            let lo0 = vorrq_u8(vandq_u8(q0, m4), h(qh0, blo));
            let lo1 = vorrq_u8(vandq_u8(q1, m4), h(qh1, blo));
            let hi0 = vorrq_u8(vshrq_n_u8::<4>(q0), h(qh0, bhi));
            let hi1 = vorrq_u8(vshrq_n_u8::<4>(q1), h(qh1, bhi));
            let yl = &y.qs[64 * j..];
            let yh = &y.qs[64 * j + 32..];
            for (k, (l, hh)) in [(lo0, hi0), (lo1, hi1)].into_iter().enumerate() {
                let pl = dot4(vreinterpretq_s8_u8(l), ld_i8(&yl[16 * k..]));
                let ph = dot4(vreinterpretq_s8_u8(hh), ld_i8(&yh[16 * k..]));
                lanes[k] = vmlaq_n_s32(lanes[k], pl, sc[2 * j]);
                lanes[k] = vmlaq_n_s32(lanes[k], ph, sc[2 * j + 1]);
            }
        }
        k_lanes(&mut acc, d, lanes);
    }
    hsum8(acc[0], acc[1]) + summs
}

/// See `scalar::dot_q6_k`.
fn dot_q6_k(row: &[u8], a: &[BlockQ8K]) -> f32 {
    // SAFETY: NEON is present (`Isa::detect` checked it before handing out these kernels).
    unsafe { dot_q6_k_neon(row, a) }
}

#[target_feature(enable = "neon")]
fn dot_q6_k_neon(row: &[u8], a: &[BlockQ8K]) -> f32 {
    assert!(a.len() >= row.len() / 210);
    let m4 = vdupq_n_u8(0x0f);
    let m3 = vdupq_n_u8(3);
    let mut acc = [vdupq_n_f32(0.0); 2];
    for (b, y) in row.chunks_exact(210).zip(a) {
        let d = y.d * f16(b, 208);
        let scales = &b[192..208];
        let sc = |i: usize| (scales[i] as i8) as i32;
        let mut lanes = [vdupq_n_s32(0); 2];
        for h in 0..2 {
            let ql = &b[64 * h..64 * h + 64];
            let qh = &b[128 + 32 * h..128 + 32 * h + 32];
            for k in 0..2 {
                // Lanes 4k..4k+4: bytes l in 16k..16k+16 of each 32-element chunk.
                let (qa, qb) = (ld_u8(&ql[16 * k..]), ld_u8(&ql[32 + 16 * k..]));
                let hb = ld_u8(&qh[16 * k..]);
                let vals = [
                    vandq_u8(qa, m4),
                    vandq_u8(qb, m4),
                    vshrq_n_u8::<4>(qa),
                    vshrq_n_u8::<4>(qb),
                ];
                for q in 0..4 {
                    let high = match q {
                        0 => vandq_u8(hb, m3),
                        1 => vandq_u8(vshrq_n_u8::<2>(hb), m3),
                        2 => vandq_u8(vshrq_n_u8::<4>(hb), m3),
                        _ => vshrq_n_u8::<6>(hb),
                    };
                    let v = vorrq_u8(vals[q], vshlq_n_u8::<4>(high));
                    let q8 = &y.qs[128 * h + 32 * q + 16 * k..];
                    let s = dot4(vreinterpretq_s8_u8(v), ld_i8(q8));
                    lanes[k] = vmlaq_n_s32(lanes[k], s, sc(8 * h + 2 * q + k));
                }
            }
        }
        // The -32 offset, taken out per lane from the 16-element activation sums.
        let mut off = [0i32; 8];
        for m in 0..8 {
            off[m] = 32
                * (y.bsums[2 * m] as i32 * sc(2 * m) + y.bsums[2 * m + 1] as i32 * sc(2 * m + 1));
        }
        // SAFETY: 8 readable i32.
        let (o0, o1) = unsafe { (vld1q_s32(off.as_ptr()), vld1q_s32(off.as_ptr().add(4))) };
        k_lanes(
            &mut acc,
            d,
            [vsubq_s32(lanes[0], o0), vsubq_s32(lanes[1], o1)],
        );
    }
    hsum8(acc[0], acc[1])
}
