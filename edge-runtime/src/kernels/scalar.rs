//! Scalar reference kernels: the definition the SIMD kernels are tested against, and the
//! fallback on machines without them. Same math as ggml's generic `ggml_vec_dot_*`.

use super::ggml_math::{hsum8, lane_sums};
use super::{f16, BlockQ8, BlockQ8K, RowDot, QK};
use llama_spec::gguf::GgmlType;
use llama_spec::quant::get_scale_min_k4;

pub fn row_dot(ty: GgmlType) -> Option<RowDot> {
    use GgmlType as T;
    Some(match ty {
        T::F32 => RowDot::F32(dot_f32),
        T::F16 => RowDot::F32(dot_f16),
        T::BF16 => RowDot::F32(dot_bf16),
        T::Q4_0 => RowDot::Q8(dot_q4_0),
        T::Q4_1 => RowDot::Q8(dot_q4_1),
        T::Q5_0 => RowDot::Q8(dot_q5_0),
        T::Q5_1 => RowDot::Q8(dot_q5_1),
        T::Q8_0 => RowDot::Q8(dot_q8_0),
        T::Q4_K => RowDot::Q8K(dot_q4_k),
        T::Q5_K => RowDot::Q8K(dot_q5_k),
        T::Q6_K => RowDot::Q8K(dot_q6_k),
        _ => return None,
    })
}

pub fn dot_f32(row: &[u8], a: &[f32]) -> f32 {
    row.chunks_exact(4)
        .zip(a)
        .map(|(c, &x)| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) * x)
        .sum()
}

pub fn dot_f16(row: &[u8], a: &[f32]) -> f32 {
    row.chunks_exact(2)
        .zip(a)
        .map(|(c, &x)| half::f16::from_bits(u16::from_le_bytes([c[0], c[1]])).to_f32() * x)
        .sum()
}

pub fn dot_bf16(row: &[u8], a: &[f32]) -> f32 {
    row.chunks_exact(2)
        .zip(a)
        .map(|(c, &x)| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16) * x)
        .sum()
}

/// The ggml AVX2 block loop: per block, 8 lanes of 4-element integer sums are scaled by `d`
/// with one FMA each; `offset` is added separately (Q4_1/Q5_1 min terms).
#[inline]
fn blocks_8lane<const BS: usize>(
    row: &[u8],
    a: &[BlockQ8],
    unpack: impl Fn(&[u8], &mut [i32; 32]) -> (f32, f32),
) -> f32 {
    let mut acc = [0f32; 8];
    let mut offsets = 0f32;
    let mut q = [0i32; 32];
    for (b, y) in row.chunks_exact(BS).zip(a) {
        let (d, m) = unpack(b, &mut q);
        // ggml: summs += m * s (for the offset formats), d = d_w * d_a.
        offsets += m * y.s;
        let dd = d * y.d;
        let lanes = lane_sums(&q, &y.qs);
        for (acc, l) in acc.iter_mut().zip(lanes) {
            *acc = l.mul_add(dd, *acc);
        }
    }
    hsum8(&acc) + offsets
}

fn nibbles(qs: &[u8], q: &mut [i32; 32], sub: i32) {
    for j in 0..QK / 2 {
        q[j] = (qs[j] & 0x0f) as i32 - sub;
        q[j + QK / 2] = (qs[j] >> 4) as i32 - sub;
    }
}

fn fifth_bits(qh: u32, q: &mut [i32; 32]) {
    for (j, v) in q.iter_mut().enumerate() {
        *v |= (((qh >> j) & 1) << 4) as i32;
    }
}

pub fn dot_q4_0(row: &[u8], a: &[BlockQ8]) -> f32 {
    blocks_8lane::<18>(row, a, |b, q| {
        nibbles(&b[2..], q, 8);
        (f16(b, 0), 0.0)
    })
}

pub fn dot_q4_1(row: &[u8], a: &[BlockQ8]) -> f32 {
    blocks_8lane::<20>(row, a, |b, q| {
        nibbles(&b[4..], q, 0);
        (f16(b, 0), f16(b, 2))
    })
}

pub fn dot_q5_0(row: &[u8], a: &[BlockQ8]) -> f32 {
    blocks_8lane::<22>(row, a, |b, q| {
        nibbles(&b[6..], q, 0);
        fifth_bits(u32::from_le_bytes([b[2], b[3], b[4], b[5]]), q);
        q.iter_mut().for_each(|v| *v -= 16);
        (f16(b, 0), 0.0)
    })
}

pub fn dot_q5_1(row: &[u8], a: &[BlockQ8]) -> f32 {
    blocks_8lane::<24>(row, a, |b, q| {
        nibbles(&b[8..], q, 0);
        fifth_bits(u32::from_le_bytes([b[4], b[5], b[6], b[7]]), q);
        (f16(b, 0), f16(b, 2))
    })
}

pub fn dot_q8_0(row: &[u8], a: &[BlockQ8]) -> f32 {
    blocks_8lane::<34>(row, a, |b, q| {
        for (v, &x) in q.iter_mut().zip(&b[2..34]) {
            *v = (x as i8) as i32;
        }
        (f16(b, 0), 0.0)
    })
}

/// Sum of `bsums` over 32-element sub-block `j`.
fn sub_sum(y: &BlockQ8K, j: usize) -> i32 {
    y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32
}

pub fn dot_q4_k(row: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in row.chunks_exact(144).zip(a) {
        let scales = &b[4..16];
        let qs = &b[16..];
        let (mut isum, mut msum) = (0i32, 0i32);
        for c in 0..4 {
            let (sc1, m1) = get_scale_min_k4(2 * c, scales);
            let (sc2, m2) = get_scale_min_k4(2 * c + 1, scales);
            let (mut s1, mut s2) = (0i32, 0i32);
            for l in 0..32 {
                let q = qs[32 * c + l];
                s1 += (q & 0x0f) as i32 * y.qs[64 * c + l] as i32;
                s2 += (q >> 4) as i32 * y.qs[64 * c + 32 + l] as i32;
            }
            isum += sc1 as i32 * s1 + sc2 as i32 * s2;
            msum += m1 as i32 * sub_sum(y, 2 * c) + m2 as i32 * sub_sum(y, 2 * c + 1);
        }
        sum += f16(b, 0) * y.d * isum as f32 - f16(b, 2) * y.d * msum as f32;
    }
    sum
}

pub fn dot_q5_k(row: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in row.chunks_exact(176).zip(a) {
        let scales = &b[4..16];
        let qh = &b[16..48];
        let qs = &b[48..];
        let (mut isum, mut msum) = (0i32, 0i32);
        for c in 0..4 {
            let (sc1, m1) = get_scale_min_k4(2 * c, scales);
            let (sc2, m2) = get_scale_min_k4(2 * c + 1, scales);
            let (u1, u2) = (1u8 << (2 * c), 2u8 << (2 * c));
            let (mut s1, mut s2) = (0i32, 0i32);
            for l in 0..32 {
                let q = qs[32 * c + l];
                let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                s1 += ((q & 0x0f) as i32 + h1) * y.qs[64 * c + l] as i32;
                s2 += ((q >> 4) as i32 + h2) * y.qs[64 * c + 32 + l] as i32;
            }
            isum += sc1 as i32 * s1 + sc2 as i32 * s2;
            msum += m1 as i32 * sub_sum(y, 2 * c) + m2 as i32 * sub_sum(y, 2 * c + 1);
        }
        sum += f16(b, 0) * y.d * isum as f32 - f16(b, 2) * y.d * msum as f32;
    }
    sum
}

pub fn dot_q6_k(row: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in row.chunks_exact(210).zip(a) {
        let mut isum = 0i32;
        for c in 0..2 {
            let ql = &b[64 * c..64 * c + 64];
            let qh = &b[128 + 32 * c..128 + 32 * c + 32];
            let sc = &b[192 + 8 * c..192 + 8 * c + 8];
            let q8 = &y.qs[128 * c..128 * c + 128];
            // Four 32-element quarters, each with two 16-element scales.
            let mut part = [0i32; 8];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                part[is] += q1 * q8[l] as i32;
                part[is + 2] += q2 * q8[l + 32] as i32;
                part[is + 4] += q3 * q8[l + 64] as i32;
                part[is + 6] += q4 * q8[l + 96] as i32;
            }
            for (k, p) in part.iter().enumerate() {
                isum += (sc[k] as i8) as i32 * p;
            }
        }
        sum += f16(b, 208) * y.d * isum as f32;
    }
    sum
}
