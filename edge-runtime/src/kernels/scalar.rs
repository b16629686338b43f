//! Scalar reference kernels: the definition the SIMD kernels are tested against, and the
//! fallback on machines without them. Same math as ggml's generic `ggml_vec_dot_*`.

use super::ggml_math::{hsum8, lane_sums, reduce32};
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
        T::Q4_K => RowDot::Q8K(dot_q4_k_seq),
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

/// Summed as `ggml_vec_dot_f16` does (32 FMA lanes, ggml's reduction, a tail in f64); the
/// activations stay f32 where llama.cpp rounds them to f16 first.
pub fn dot_f16(row: &[u8], a: &[f32]) -> f32 {
    let n = a.len().min(row.len() / 2);
    let np = n & !31;
    let mut acc = [0f32; 32];
    for (i, &x) in a[..np].iter().enumerate() {
        acc[i % 32] = f16(row, 2 * i).mul_add(x, acc[i % 32]);
    }
    let mut sum = f64::from(reduce32(&acc));
    for (i, &x) in a.iter().enumerate().take(n).skip(np) {
        sum += f64::from(f16(row, 2 * i) * x);
    }
    sum as f32
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

/// Q4_0 as llama.cpp computes it on AVX2 machines: its CPU backend repacks Q4_0 matrices
/// (rows in groups of 8) and its gemv keeps one float accumulator per row, adding each block's
/// exact integer dot with one FMA: `acc = fma(isum, d_w * d_a, acc)`.
pub fn dot_q4_0(row: &[u8], a: &[BlockQ8]) -> f32 {
    let mut acc = 0f32;
    let mut q = [0i32; 32];
    for (b, y) in row.chunks_exact(18).zip(a) {
        nibbles(&b[2..], &mut q, 8);
        let isum: i32 = q.iter().zip(&y.qs).map(|(&w, &x)| w * x as i32).sum();
        acc = (isum as f32).mul_add(f16(b, 0) * y.d, acc);
    }
    acc
}

/// Q4_0 in ggml's `ggml_vec_dot_q4_0_q8_0` lane layout (llama.cpp's path for matrices it does
/// not repack); kept to check the lane machinery against ggml.
pub fn dot_q4_0_lanes(row: &[u8], a: &[BlockQ8]) -> f32 {
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

/// The K-quant kernels in ggml's AVX2 lane layout: lane `k` of a block holds the exact integer
/// sum over bytes `4k..4k+3` of every 32-element chunk (each product weighted by its sub-block
/// scale); lanes are scaled by `d = d_a * d_w` with one FMA per block and summed with
/// [`hsum8`]. The mins term follows each type's ggml kernel.
#[inline]
fn k_lanes(acc: &mut [f32; 8], d: f32, lanes: &[i32; 8]) {
    for (a, &l) in acc.iter_mut().zip(lanes) {
        *a = d.mul_add(l as f32, *a);
    }
}

/// `(scale, min)` of the 8 sub-blocks of a Q4_K/Q5_K block.
pub(super) fn scales_mins(scales: &[u8]) -> ([i32; 8], [i32; 8]) {
    let (mut sc, mut m) = ([0i32; 8], [0i32; 8]);
    for j in 0..8 {
        let (a, b) = get_scale_min_k4(j, scales);
        sc[j] = a as i32;
        m[j] = b as i32;
    }
    (sc, m)
}

/// Sub-block sums of the activations (ggml: `hadd` of the 16 `bsums`).
fn q8_sub_sums(y: &BlockQ8K) -> [i32; 8] {
    let mut s = [0i32; 8];
    for (i, v) in s.iter_mut().enumerate() {
        *v = y.bsums[2 * i] as i32 + y.bsums[2 * i + 1] as i32;
    }
    s
}

/// `sum_j mn_j * (activation sum of sub-block j)`, exactly: the K-quants' min term.
pub(super) fn mins_dot(mn: &[i32; 8], y: &BlockQ8K) -> i32 {
    let q8s = q8_sub_sums(y);
    mn.iter().zip(&q8s).map(|(m, q)| m * q).sum()
}

/// Q4_K as llama.cpp computes the weights its CPU backend repacks for AVX2 (every Q4_K matrix
/// with rows in groups of 8, so every real one; `ggml_gemv_q4_K_8x8_q8_K`): per super-block,
/// the integer sums of scaled products and of mins times activation sums, each folded into one
/// f32 accumulator with an FMA by `d_w * d_a` (`dmin_w * d_a`); the result is their difference.
pub fn dot_q4_k_seq(row: &[u8], a: &[BlockQ8K]) -> f32 {
    let (mut acc, mut acc_min) = (0f32, 0f32);
    for (b, y) in row.chunks_exact(144).zip(a) {
        let (sc, mn) = scales_mins(&b[4..16]);
        let q8s = q8_sub_sums(y);
        let mins: i32 = (0..8).map(|j| mn[j] * q8s[j]).sum();
        let qs = &b[16..];
        let mut sum = 0i32;
        for j in 0..4 {
            let (mut lo, mut hi) = (0i32, 0i32);
            for e in 0..32 {
                let q = qs[32 * j + e];
                lo += (q & 0x0f) as i32 * y.qs[64 * j + e] as i32;
                hi += (q >> 4) as i32 * y.qs[64 * j + 32 + e] as i32;
            }
            sum += sc[2 * j] * lo + sc[2 * j + 1] * hi;
        }
        acc = (sum as f32).mul_add(f16(b, 0) * y.d, acc);
        acc_min = (mins as f32).mul_add(f16(b, 2) * y.d, acc_min);
    }
    acc - acc_min
}

/// Q4_K as `ggml_vec_dot_q4_K_q8_K` (AVX2) computes it, for matrices llama.cpp does not repack.
pub fn dot_q4_k(row: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut acc = [0f32; 8];
    let mut acc_m = [0f32; 4];
    for (b, y) in row.chunks_exact(144).zip(a) {
        let d = y.d * f16(b, 0);
        let dmin = -y.d * f16(b, 2);
        let (sc, mn) = scales_mins(&b[4..16]);
        let q8s = q8_sub_sums(y);
        for m in 0..4 {
            let prod = mn[2 * m] * q8s[2 * m] + mn[2 * m + 1] * q8s[2 * m + 1];
            acc_m[m] = dmin.mul_add(prod as f32, acc_m[m]);
        }
        let qs = &b[16..];
        let mut lanes = [0i32; 8];
        for j in 0..4 {
            for (k, lane) in lanes.iter_mut().enumerate() {
                let (mut lo, mut hi) = (0i32, 0i32);
                for e in 4 * k..4 * k + 4 {
                    let q = qs[32 * j + e];
                    lo += (q & 0x0f) as i32 * y.qs[64 * j + e] as i32;
                    hi += (q >> 4) as i32 * y.qs[64 * j + 32 + e] as i32;
                }
                *lane += sc[2 * j] * lo + sc[2 * j + 1] * hi;
            }
        }
        k_lanes(&mut acc, d, &lanes);
    }
    hsum8(&acc) + ((acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3]))
}

pub fn dot_q5_k(row: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut acc = [0f32; 8];
    let mut summs = 0f32;
    for (b, y) in row.chunks_exact(176).zip(a) {
        let d = y.d * f16(b, 0);
        let dmin = -y.d * f16(b, 2);
        let (sc, mn) = scales_mins(&b[4..16]);
        // GCC contracts ggml's `summs += dmin * hsum` into an FMA (-mfma, -ffp-contract=fast).
        summs = dmin.mul_add(mins_dot(&mn, y) as f32, summs);
        let qh = &b[16..48];
        let qs = &b[48..];
        let mut lanes = [0i32; 8];
        for j in 0..4 {
            for (k, lane) in lanes.iter_mut().enumerate() {
                let (mut lo, mut hi) = (0i32, 0i32);
                for e in 4 * k..4 * k + 4 {
                    let q = qs[32 * j + e];
                    let h0 = ((qh[e] >> (2 * j)) & 1) << 4;
                    let h1 = ((qh[e] >> (2 * j + 1)) & 1) << 4;
                    lo += ((q & 0x0f) | h0) as i32 * y.qs[64 * j + e] as i32;
                    hi += ((q >> 4) | h1) as i32 * y.qs[64 * j + 32 + e] as i32;
                }
                *lane += sc[2 * j] * lo + sc[2 * j + 1] * hi;
            }
        }
        k_lanes(&mut acc, d, &lanes);
    }
    hsum8(&acc) + summs
}

pub fn dot_q6_k(row: &[u8], a: &[BlockQ8K]) -> f32 {
    let mut acc = [0f32; 8];
    for (b, y) in row.chunks_exact(210).zip(a) {
        let d = y.d * f16(b, 208);
        let scales = &b[192..208];
        let sc = |i: usize| (scales[i] as i8) as i32;
        let mut lanes = [0i32; 8];
        for h in 0..2 {
            let ql = &b[64 * h..64 * h + 64];
            let qh = &b[128 + 32 * h..128 + 32 * h + 32];
            for q in 0..4 {
                // Chunk (h, q): elements 128h + 32q + l, l in 0..32, unsigned 6-bit values.
                let q8 = &y.qs[128 * h + 32 * q..128 * h + 32 * q + 32];
                for (k, lane) in lanes.iter_mut().enumerate() {
                    let mut s = 0i32;
                    for l in 4 * k..4 * k + 4 {
                        let lq = match q {
                            0 => ql[l] & 0x0f,
                            1 => ql[l + 32] & 0x0f,
                            2 => ql[l] >> 4,
                            _ => ql[l + 32] >> 4,
                        };
                        s += (lq | (((qh[l] >> (2 * q)) & 3) << 4)) as i32 * q8[l] as i32;
                    }
                    *lane += sc(8 * h + 2 * q + k / 4) * s;
                }
            }
        }
        // The -32 offset, taken out per lane from the 16-element activation sums.
        for (m, lane) in lanes.iter_mut().enumerate() {
            *lane -= 32
                * (y.bsums[2 * m] as i32 * sc(2 * m) + y.bsums[2 * m + 1] as i32 * sc(2 * m + 1));
        }
        k_lanes(&mut acc, d, &lanes);
    }
    hsum8(&acc)
}

/// XOR of the 8 words of every 64-byte line of `buf` (a whole number of lines): a pass that
/// only reads, for the read-bandwidth measure ([`super::speed`]).
pub fn xor_lines(buf: &[u8]) -> [u64; 8] {
    let mut acc = [0u64; 8];
    for line in buf.chunks_exact(64) {
        for (a, w) in acc.iter_mut().zip(line.chunks_exact(8)) {
            *a ^= u64::from_le_bytes(w.try_into().expect("8 bytes"));
        }
    }
    acc
}
