//! The 256-element "K" super-block formats Q4_K, Q5_K, Q6_K and Q8_K: line-by-line ports of
//! ggml-quants.c (`make_qkx2_quants`, `make_qx_quants`, `quantize_row_q*_K_ref`,
//! `dequantize_row_q*_K`). Operation order is kept so that results are bit-identical.
// Index loops are kept so the code reads line by line against ggml-quants.c.
#![allow(clippy::needless_range_loop)]

use super::float::{f16_to_f32, f32_to_f16};
use super::nearest_int;

pub const QK_K: usize = 256;
const K_SCALE_SIZE: usize = 12;
const GROUP_MAX_EPS: f32 = 1e-15;

/// 8 sub-blocks of 32 with 6-bit scales and mins: `x = d*sc*q - dmin*m`, q in 0..16.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BlockQ4K {
    pub d: u16,    // f16, super-block scale for the scales
    pub dmin: u16, // f16, super-block scale for the mins
    pub scales: [u8; K_SCALE_SIZE],
    pub qs: [u8; QK_K / 2],
}

/// As Q4_K with a fifth bit per weight in `qh`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BlockQ5K {
    pub d: u16,
    pub dmin: u16,
    pub scales: [u8; K_SCALE_SIZE],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}

/// 16 sub-blocks of 16 with i8 scales: `x = d*sc*(q - 32)`, q 6 bits split in ql/qh.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: u16,
}

/// Activation format for K-quant dot products: f32 scale, i8 values, sums of 16-value groups.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BlockQ8K {
    pub d: f32,
    pub qs: [i8; QK_K],
    pub bsums: [i16; QK_K / 16],
}

const Q4K: usize = std::mem::size_of::<BlockQ4K>();
const Q5K: usize = std::mem::size_of::<BlockQ5K>();
const Q6K: usize = std::mem::size_of::<BlockQ6K>();
const Q8K: usize = std::mem::size_of::<BlockQ8K>();
const _: () = assert!(Q4K == 144 && Q5K == 176 && Q6K == 210 && Q8K == 292);

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

/// `make_qkx2_quants`: fit `x ~ scale*L - min` with L in 0..=nmax by weighted least squares
/// over a small grid of scales. Returns (scale, -min). The line-by-line port; quantization
/// runs [`make_qkx2_quants_x8`], which must equal it bit for bit.
#[cfg(test)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l_out: &mut [u8],
    l_aux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out[..n].fill(0);
        return (0.0, -min);
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min));
        l_out[i] = l.clamp(0, nmax) as u8;
        let mut diff = scale * l_out[i] as f32 + min - x[i];
        diff = if use_mad { diff.abs() } else { diff * diff };
        best_error += weights[i] * diff;
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            l_aux[i] = l as u8;
            let w = weights[i];
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..n {
                let mut diff = this_scale * l_aux[i] as f32 + this_min - x[i];
                diff = if use_mad { diff.abs() } else { diff * diff };
                cur_error += weights[i] * diff;
            }
            if cur_error < best_error {
                l_out[..n].copy_from_slice(&l_aux[..n]);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Sub-blocks fitted side by side by [`make_qkx2_quants_x8`].
const LANES: usize = QK_K / 32;

/// [`make_qkx2_quants`] (`use_mad = false`) for the 8 sub-blocks of 32 of a super-block at
/// once, lane `k` doing exactly sub-block `k`'s operations in the scalar order. The scalar
/// fit is a chain of dependent additions (each waits for the last), so one sub-block at a
/// time leaves the core idle; 8 independent chains side by side fill it, and the compiler can
/// vectorize across lanes. `x[i][k]` and `weights[i][k]` are element `i` of sub-block `k`;
/// levels go to `l_out[32 * k + i]`. Returns each lane's (scale, -min).
#[allow(clippy::too_many_arguments)]
pub(crate) fn make_qkx2_quants_x8(
    nmax: i32,
    x: &[[f32; LANES]; 32],
    weights: &[[f32; LANES]; 32],
    l_out: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> ([f32; LANES], [f32; LANES]) {
    let n = 32;
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = [0f32; LANES];
    for k in 0..LANES {
        sum_x[k] = sum_w[k] * x[0][k];
    }
    for i in 1..n {
        for k in 0..LANES {
            let v = x[i][k];
            min[k] = if v < min[k] { v } else { min[k] };
            max[k] = if v > max[k] { v } else { max[k] };
            let w = weights[i][k];
            sum_w[k] += w;
            sum_x[k] += w * v;
        }
    }
    let mut flat = [false; LANES];
    for k in 0..LANES {
        if min[k] > 0.0 {
            min[k] = 0.0;
        }
        flat[k] = max[k] == min[k];
    }
    let nmax_f = nmax as f32;
    let mut scale = [0f32; LANES];
    let mut iscale = [0f32; LANES];
    for k in 0..LANES {
        iscale[k] = nmax_f / (max[k] - min[k]);
        scale[k] = 1.0 / iscale[k];
    }
    let mut best = [[0i32; LANES]; 32];
    let mut best_error = [0f32; LANES];
    for i in 0..n {
        for k in 0..LANES {
            let l = super::nearest_int(iscale[k] * (x[i][k] - min[k])).clamp(0, nmax);
            best[i][k] = l;
            let diff = scale[k] * l as f32 + min[k] - x[i][k];
            best_error[k] += weights[i][k] * (diff * diff);
        }
    }
    if nstep >= 1 {
        let mut aux = [[0i32; LANES]; 32];
        for is in 0..=nstep {
            for k in 0..LANES {
                iscale[k] = (rmin + rdelta * is as f32 + nmax_f) / (max[k] - min[k]);
            }
            let (mut sum_l, mut sum_l2, mut sum_xl) = ([0f32; LANES], [0f32; LANES], [0f32; LANES]);
            for i in 0..n {
                for k in 0..LANES {
                    let l = super::nearest_int(iscale[k] * (x[i][k] - min[k])).clamp(0, nmax);
                    aux[i][k] = l;
                    let w = weights[i][k];
                    let lf = l as f32;
                    sum_l[k] += w * lf;
                    sum_l2[k] += w * lf * lf;
                    sum_xl[k] += w * lf * x[i][k];
                }
            }
            let mut this_scale = [0f32; LANES];
            let mut this_min = [0f32; LANES];
            let mut fits = [false; LANES];
            for k in 0..LANES {
                let d = sum_w[k] * sum_l2[k] - sum_l[k] * sum_l[k];
                fits[k] = d > 0.0;
                this_scale[k] = (sum_w[k] * sum_xl[k] - sum_x[k] * sum_l[k]) / d;
                this_min[k] = (sum_l2[k] * sum_x[k] - sum_l[k] * sum_xl[k]) / d;
                if this_min[k] > 0.0 {
                    this_min[k] = 0.0;
                    this_scale[k] = sum_xl[k] / sum_l2[k];
                }
            }
            let mut cur_error = [0f32; LANES];
            for i in 0..n {
                for k in 0..LANES {
                    let diff = this_scale[k] * aux[i][k] as f32 + this_min[k] - x[i][k];
                    cur_error[k] += weights[i][k] * (diff * diff);
                }
            }
            for k in 0..LANES {
                // Where the scalar code skips (d <= 0) the lane computed values it ignores.
                if fits[k] && cur_error[k] < best_error[k] {
                    for i in 0..n {
                        best[i][k] = aux[i][k];
                    }
                    best_error[k] = cur_error[k];
                    scale[k] = this_scale[k];
                    min[k] = this_min[k];
                }
            }
        }
    }
    for k in 0..LANES {
        for i in 0..n {
            l_out[32 * k + i] = if flat[k] { 0 } else { best[i][k] as u8 };
        }
        if flat[k] {
            scale[k] = 0.0;
        }
        min[k] = -min[k];
    }
    (scale, min)
}

/// `make_qx_quants` with `qw == NULL`: symmetric fit `x ~ scale*(L - nmax)`, L in 0..2*nmax.
#[cfg(test)]
pub(crate) fn make_qx_quants(nmax: i32, x: &[f32], l_out: &mut [i8], rmse_type: i32) -> f32 {
    let n = x.len();
    let mut max = 0f32;
    let mut amax = 0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l_out[..n].fill(0);
        return 0.0;
    }
    let mut iscale = -(nmax as f32) / max;
    if rmse_type == 0 {
        for i in 0..n {
            let l = nearest_int(iscale * x[i]);
            l_out[i] = (nmax + l.clamp(-nmax, nmax - 1)) as i8;
        }
        return 1.0 / iscale;
    }
    let mut rmse_type = rmse_type;
    let mut return_early = false;
    if rmse_type < 0 {
        rmse_type = -rmse_type;
        return_early = true;
    }
    let weight = |v: f32| match rmse_type {
        1 => v * v,
        2 => 1.0,
        3 => v.abs(),
        _ => v.abs().sqrt(),
    };
    let mut sumlx = 0f32;
    let mut suml2 = 0f32;
    for i in 0..n {
        let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
        l_out[i] = (l + nmax) as i8;
        let w = weight(x[i]);
        let lf = l as f32;
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    if return_early {
        return if suml2 > 0.0 {
            0.5 * (scale + 1.0 / iscale)
        } else {
            1.0 / iscale
        };
    }
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for i in 0..n {
            let l = nearest_int(iscale * x[i]).clamp(-nmax, nmax - 1);
            let w = weight(x[i]);
            let lf = l as f32;
            sumlx += w * x[i] * lf;
            suml2 += w * lf * lf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for i in 0..n {
                let l = nearest_int(iscale * x[i]);
                l_out[i] = (nmax + l.clamp(-nmax, nmax - 1)) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Sub-blocks fitted side by side by [`make_qx_quants_x16`].
const LANES16: usize = QK_K / 16;

/// [`make_qx_quants`] with `rmse_type = 1` (what Q6_K uses) for the 16 sub-blocks of 16 of a
/// super-block at once, lane `k` doing exactly sub-block `k`'s operations in the scalar order
/// (see [`make_qkx2_quants_x8`] for why). `x[i][k]` is element `i` of sub-block `k`; levels
/// go to `l_out[16 * k + i]`. Returns each lane's scale.
pub(crate) fn make_qx_quants_x16(
    nmax: i32,
    x: &[[f32; LANES16]; 16],
    l_out: &mut [i8],
) -> [f32; LANES16] {
    let n = 16;
    let mut max = [0f32; LANES16];
    let mut amax = [0f32; LANES16];
    for i in 0..n {
        for k in 0..LANES16 {
            let ax = x[i][k].abs();
            if ax > amax[k] {
                amax[k] = ax;
                max[k] = x[i][k];
            }
        }
    }
    let nmax_f = nmax as f32;
    // Sums over one sub-block for a given iscale per lane: (sumlx, suml2), weights x^2.
    let sums = |iscale: &[f32; LANES16]| {
        let (mut sumlx, mut suml2) = ([0f32; LANES16], [0f32; LANES16]);
        for i in 0..n {
            for k in 0..LANES16 {
                let v = x[i][k];
                let lf = super::nearest_int(iscale[k] * v).clamp(-nmax, nmax - 1) as f32;
                let w = v * v;
                sumlx[k] += w * v * lf;
                suml2[k] += w * lf * lf;
            }
        }
        (sumlx, suml2)
    };
    let mut iscale = [0f32; LANES16];
    for k in 0..LANES16 {
        iscale[k] = -nmax_f / max[k];
    }
    let mut best_iscale = iscale;
    let (sumlx, suml2) = sums(&iscale);
    let mut scale = [0f32; LANES16];
    let mut best = [0f32; LANES16];
    for k in 0..LANES16 {
        scale[k] = if suml2[k] != 0.0 {
            sumlx[k] / suml2[k]
        } else {
            0.0
        };
        best[k] = scale[k] * sumlx[k];
    }
    for is in (-9..=9).filter(|&is| is != 0) {
        for k in 0..LANES16 {
            iscale[k] = -(nmax_f + 0.1 * is as f32) / max[k];
        }
        let (sumlx, suml2) = sums(&iscale);
        for k in 0..LANES16 {
            if suml2[k] > 0.0 && sumlx[k] * sumlx[k] > best[k] * suml2[k] {
                best_iscale[k] = iscale[k];
                scale[k] = sumlx[k] / suml2[k];
                best[k] = scale[k] * sumlx[k];
            }
        }
    }
    // The levels of each lane's last accepted iscale (the scalar code rewrites them on every
    // acceptance; the last one stands).
    for k in 0..LANES16 {
        let tiny = amax[k] < GROUP_MAX_EPS;
        for i in 0..n {
            let l = super::nearest_int(best_iscale[k] * x[i][k]).clamp(-nmax, nmax - 1);
            l_out[16 * k + i] = if tiny { 0 } else { (nmax + l) as i8 };
        }
        if tiny {
            scale[k] = 0.0;
        }
    }
    scale
}

/// Unpack the 6-bit scale and min of sub-block `j` from the 12-byte K-quant scale array.
#[inline]
pub fn get_scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Shared first half of Q4_K/Q5_K quantization: per-sub-block scales and mins, packed into
/// the 12-byte array and the two f16 super-scales, then final levels in `l`.
fn quantize_scales_mins(
    x: &[f32],
    nmax: i32,
    rmin: f32,
    nstep: i32,
    l: &mut [u8; QK_K],
    scales_out: &mut [u8],
) -> (u16, u16) {
    // Element i of sub-block k at [i][k]: the layout make_qkx2_quants_x8 works in.
    let mut xs = [[0f32; LANES]; 32];
    let mut weights = [[0f32; LANES]; 32];
    let mut sum_x2 = [0f32; LANES];
    for i in 0..32 {
        for k in 0..LANES {
            let v = x[32 * k + i];
            xs[i][k] = v;
            sum_x2[k] += v * v;
        }
    }
    for k in 0..LANES {
        let av_x = (sum_x2[k] / 32.0).sqrt();
        for i in 0..32 {
            weights[i][k] = av_x + xs[i][k].abs();
        }
    }
    let (scales, mins) = make_qkx2_quants_x8(nmax, &xs, &weights, &mut l[..], rmin, 0.1, nstep);
    let mut max_scale = 0f32;
    let mut max_min = 0f32;
    for j in 0..QK_K / 32 {
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    for j in 0..QK_K / 32 {
        // C: `uint8_t ls = nearest_int(...)` wraps to 8 bits before the MIN.
        let ls = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        let lm = (nearest_int(inv_min * mins[j]) as u8).min(63);
        if j < 4 {
            scales_out[j] = ls;
            scales_out[j + 4] = lm;
        } else {
            scales_out[j + 4] = (ls & 0x0f) | ((lm & 0x0f) << 4);
            scales_out[j - 4] |= (ls >> 4) << 6;
            scales_out[j] |= (lm >> 4) << 6;
        }
    }
    let d = f32_to_f16(max_scale / 63.0);
    let dmin = f32_to_f16(max_min / 63.0);
    for j in 0..QK_K / 32 {
        let (sc, m) = get_scale_min_k4(j, scales_out);
        let d = f16_to_f32(d) * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = f16_to_f32(dmin) * m as f32;
        for ii in 0..32 {
            let q = nearest_int((x[32 * j + ii] + dm) / d);
            l[32 * j + ii] = q.clamp(0, nmax) as u8;
        }
    }
    (d, dmin)
}

pub fn quantize_row_q4_k(x: &[f32], y: &mut [u8]) {
    let mut l = [0u8; QK_K];
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.chunks_exact_mut(Q4K)) {
        let (head, rest) = yb.split_at_mut(4);
        let (scales, qs) = rest.split_at_mut(K_SCALE_SIZE);
        let (d, dmin) = quantize_scales_mins(xb, 15, -1.0, 20, &mut l, scales);
        head[0..2].copy_from_slice(&d.to_le_bytes());
        head[2..4].copy_from_slice(&dmin.to_le_bytes());
        for (c, j) in (0..QK_K).step_by(64).enumerate() {
            for i in 0..32 {
                qs[32 * c + i] = l[j + i] | (l[j + i + 32] << 4);
            }
        }
    }
}

pub fn dequantize_row_q4_k(x: &[u8], y: &mut [f32]) {
    for (xb, yb) in x.chunks_exact(Q4K).zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_at(xb, 0);
        let min = f16_at(xb, 2);
        let scales = &xb[4..16];
        let qs = &xb[16..];
        for c in 0..QK_K / 64 {
            let (sc, m) = get_scale_min_k4(2 * c, scales);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            let (sc, m) = get_scale_min_k4(2 * c + 1, scales);
            let (d2, m2) = (d * sc as f32, min * m as f32);
            let q = &qs[32 * c..32 * c + 32];
            let out = &mut yb[64 * c..64 * c + 64];
            for l in 0..32 {
                out[l] = d1 * (q[l] & 0x0f) as f32 - m1;
                out[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
            }
        }
    }
}

pub fn quantize_row_q5_k(x: &[f32], y: &mut [u8]) {
    let mut l = [0u8; QK_K];
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.chunks_exact_mut(Q5K)) {
        let (head, rest) = yb.split_at_mut(4);
        let (scales, rest) = rest.split_at_mut(K_SCALE_SIZE);
        let (qh, ql) = rest.split_at_mut(QK_K / 8);
        let (d, dmin) = quantize_scales_mins(xb, 31, -0.5, 15, &mut l, scales);
        head[0..2].copy_from_slice(&d.to_le_bytes());
        head[2..4].copy_from_slice(&dmin.to_le_bytes());
        qh.fill(0);
        let (mut m1, mut m2) = (1u8, 2u8);
        for (c, n) in (0..QK_K).step_by(64).enumerate() {
            for j in 0..32 {
                let mut l1 = l[n + j];
                if l1 > 15 {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                let mut l2 = l[n + j + 32];
                if l2 > 15 {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                ql[32 * c + j] = l1 | (l2 << 4);
            }
            m1 <<= 2;
            m2 <<= 2;
        }
    }
}

pub fn dequantize_row_q5_k(x: &[u8], y: &mut [f32]) {
    for (xb, yb) in x.chunks_exact(Q5K).zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_at(xb, 0);
        let min = f16_at(xb, 2);
        let scales = &xb[4..16];
        let qh = &xb[16..48];
        let qs = &xb[48..];
        let (mut u1, mut u2) = (1u8, 2u8);
        for c in 0..QK_K / 64 {
            let (sc, m) = get_scale_min_k4(2 * c, scales);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            let (sc, m) = get_scale_min_k4(2 * c + 1, scales);
            let (d2, m2) = (d * sc as f32, min * m as f32);
            let ql = &qs[32 * c..32 * c + 32];
            let out = &mut yb[64 * c..64 * c + 64];
            for l in 0..32 {
                let hi1 = if qh[l] & u1 != 0 { 16 } else { 0 };
                let hi2 = if qh[l] & u2 != 0 { 16 } else { 0 };
                out[l] = d1 * ((ql[l] & 0x0f) + hi1) as f32 - m1;
                out[l + 32] = d2 * ((ql[l] >> 4) + hi2) as f32 - m2;
            }
            u1 <<= 2;
            u2 <<= 2;
        }
    }
}

pub fn quantize_row_q6_k(x: &[f32], y: &mut [u8]) {
    let mut l = [0i8; QK_K];
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.chunks_exact_mut(Q6K)) {
        let mut max_scale = 0f32;
        let mut max_abs_scale = 0f32;
        let mut xs = [[0f32; LANES16]; 16];
        for i in 0..16 {
            for k in 0..LANES16 {
                xs[i][k] = xb[16 * k + i];
            }
        }
        let scales = make_qx_quants_x16(32, &xs, &mut l);
        for &scale in &scales {
            let abs_scale = scale.abs();
            if abs_scale > max_abs_scale {
                max_abs_scale = abs_scale;
                max_scale = scale;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            yb.fill(0);
            continue;
        }
        let (ql, rest) = yb.split_at_mut(QK_K / 2);
        let (qh, rest) = rest.split_at_mut(QK_K / 4);
        let (sc_out, d_out) = rest.split_at_mut(QK_K / 16);
        let iscale = -128.0 / max_scale;
        let d16 = f32_to_f16(1.0 / iscale);
        d_out.copy_from_slice(&d16.to_le_bytes());
        for ib in 0..QK_K / 16 {
            sc_out[ib] = nearest_int(iscale * scales[ib]).min(127) as i8 as u8;
        }
        let dh = f16_to_f32(d16);
        for j in 0..QK_K / 16 {
            let d = dh * (sc_out[j] as i8) as f32;
            if d == 0.0 {
                continue;
            }
            for ii in 0..16 {
                let q = nearest_int(xb[16 * j + ii] / d).clamp(-32, 31);
                l[16 * j + ii] = (q + 32) as i8;
            }
        }
        for (c, j) in (0..QK_K).step_by(128).enumerate() {
            let ql = &mut ql[64 * c..64 * c + 64];
            let qh = &mut qh[32 * c..32 * c + 32];
            for i in 0..32 {
                let (a, b, cc, dd) = (
                    l[j + i] as u8,
                    l[j + i + 32] as u8,
                    l[j + i + 64] as u8,
                    l[j + i + 96] as u8,
                );
                ql[i] = (a & 0x0f) | ((cc & 0x0f) << 4);
                ql[i + 32] = (b & 0x0f) | ((dd & 0x0f) << 4);
                qh[i] = (a >> 4) | ((b >> 4) << 2) | ((cc >> 4) << 4) | ((dd >> 4) << 6);
            }
        }
    }
}

pub fn dequantize_row_q6_k(x: &[u8], y: &mut [f32]) {
    for (xb, yb) in x.chunks_exact(Q6K).zip(y.chunks_exact_mut(QK_K)) {
        let d = f16_at(xb, 208);
        for c in 0..QK_K / 128 {
            let ql = &xb[64 * c..64 * c + 64];
            let qh = &xb[128 + 32 * c..128 + 32 * c + 32];
            let sc = &xb[192 + 8 * c..192 + 8 * c + 8];
            let out = &mut yb[128 * c..128 * c + 128];
            for l in 0..32 {
                let is = l / 16;
                let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
                let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                out[l] = d * (sc[is] as i8) as f32 * q1 as f32;
                out[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
                out[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
                out[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
            }
        }
    }
}

/// One Q8_K block as `(d, quants, sums of each 16 quants)`, exactly as ggml's
/// `quantize_row_q8_K_ref`; an all-zero block gives all zeros (ggml leaves its sums unset).
pub fn quantize_block_q8_k(x: &[f32]) -> (f32, [i8; QK_K], [i16; QK_K / 16]) {
    let mut max = 0f32;
    let mut amax = 0f32;
    for &v in &x[..QK_K] {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    let mut qs = [0i8; QK_K];
    let mut bsums = [0i16; QK_K / 16];
    if amax == 0.0 {
        return (0.0, qs, bsums);
    }
    let iscale = -127.0 / max;
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = nearest_int(iscale * v).min(127) as i8;
    }
    for (j, s) in bsums.iter_mut().enumerate() {
        *s = qs[16 * j..16 * j + 16].iter().map(|&q| i16::from(q)).sum();
    }
    (1.0 / iscale, qs, bsums)
}

pub fn quantize_row_q8_k(x: &[f32], y: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(QK_K).zip(y.chunks_exact_mut(Q8K)) {
        let (d, qs, bsums) = quantize_block_q8_k(xb);
        yb[0..4].copy_from_slice(&d.to_le_bytes());
        for (o, q) in yb[4..4 + QK_K].iter_mut().zip(qs) {
            *o = q as u8;
        }
        for (o, s) in yb[4 + QK_K..].chunks_exact_mut(2).zip(bsums) {
            o.copy_from_slice(&s.to_le_bytes());
        }
    }
}

pub fn dequantize_row_q8_k(x: &[u8], y: &mut [f32]) {
    for (xb, yb) in x.chunks_exact(Q8K).zip(y.chunks_exact_mut(QK_K)) {
        let d = f32::from_le_bytes([xb[0], xb[1], xb[2], xb[3]]);
        for (o, &q) in yb.iter_mut().zip(&xb[4..4 + QK_K]) {
            *o = d * (q as i8) as f32;
        }
    }
}
