//! Scalar definitions of the float arithmetic llama.cpp's AVX2 CPU backend performs, so that our
//! results can be compared with it at the level of rounding: the 8-lane FMA accumulation and
//! horizontal sums of the quantized dot products, the 4x8-accumulator f16 dot product, and
//! ggml's vectorized `expf` approximation used by SiLU and softmax.

use half::f16;

/// ggml's `hsum_float_8`: `(r0 + r2) + (r1 + r3)` with `r_l = x_l + x_{l+4}`.
#[inline]
pub fn hsum8(x: &[f32; 8]) -> f32 {
    let r = [x[0] + x[4], x[1] + x[5], x[2] + x[6], x[3] + x[7]];
    (r[0] + r[2]) + (r[1] + r[3])
}

/// Integer sums of 4 consecutive products (what `maddubs` + `madd(ones)` produce per lane).
#[inline]
pub fn lane_sums(a: &[i32; 32], b: &[i8; 32]) -> [f32; 8] {
    let mut out = [0f32; 8];
    for (k, o) in out.iter_mut().enumerate() {
        let s: i32 = (0..4).map(|e| a[4 * k + e] * b[4 * k + e] as i32).sum();
        *o = s as f32;
    }
    out
}

/// ggml's 4 x 8-lane reduction (`GGML_F32x8_REDUCE`) of 32 lanes `a[j*8 + l]`.
#[inline]
pub fn reduce32(a: &[f32; 32]) -> f32 {
    let mut y = [0f32; 8];
    for l in 0..8 {
        y[l] = (a[l] + a[16 + l]) + (a[8 + l] + a[24 + l]);
    }
    let t = [y[0] + y[4], y[1] + y[5], y[2] + y[6], y[3] + y[7]];
    (t[0] + t[1]) + (t[2] + t[3])
}

/// `ggml_vec_dot_f16` as the AVX2+F16C build computes it: lane `i % 32` accumulates with FMA,
/// a tail beyond a multiple of 32 is added in double precision.
pub fn dot_f16(x: &[f16], y: &[f32]) -> f32 {
    let n = x.len().min(y.len());
    let np = n & !31;
    let mut acc = [0f32; 32];
    for i in 0..np {
        acc[i % 32] = x[i].to_f32().mul_add(y[i], acc[i % 32]);
    }
    let mut sum = f64::from(reduce32(&acc));
    for i in np..n {
        sum += f64::from(x[i].to_f32() * y[i]);
    }
    sum as f32
}

const EXP_SHIFT: f32 = 12_582_912.0; // 0x1.8p23
const LOG2E: u32 = 0x3fb8_aa3b; // 0x1.715476p+0
const LN2_LO: u32 = 0x35bf_be8e; // 0x1.7f7d1cp-20
const LN2_HI: u32 = 0x3f31_7200; // 0x1.62e4p-1
const C4: u32 = 0x3c07_2010; // 0x1.0e4020p-7
const C3: u32 = 0x3d2b_9f17; // 0x1.573e2ep-5
const C2: u32 = 0x3e2a_af33; // 0x1.555e66p-3
const C1: u32 = 0x3eff_fedb; // 0x1.fffdb6p-2
const C0: u32 = 0x3f7f_fff6; // 0x1.ffffecp-1

/// ggml's `ggml_v_expf` (AVX2+FMA), one lane: max error ~1.5 ulp, flushes beyond ±~100.
#[inline(always)]
pub fn expf(x: f32) -> f32 {
    let f = f32::from_bits;
    let z = x.mul_add(f(LOG2E), EXP_SHIFT);
    let n = z - EXP_SHIFT;
    let b = (-n).mul_add(f(LN2_LO), (-n).mul_add(f(LN2_HI), x));
    let e = z.to_bits() << 23;
    let k = f(e.wrapping_add(1f32.to_bits()));
    let u = b * b;
    let j = f(C4)
        .mul_add(b, f(C3))
        .mul_add(u, f(C2).mul_add(b, f(C1)))
        .mul_add(u, f(C0) * b);
    // Ordered compare, as `_CMP_GT_OQ`: NaN takes the fast path.
    let large = n.abs() > 126.0;
    if !large {
        return j.mul_add(k, k);
    }
    let g: u32 = if n <= 0.0 { 0x8200_0000 } else { 0 };
    let s1 = f(g.wrapping_add(0x7f00_0000));
    let s2 = f(e.wrapping_sub(g));
    if n.abs() > 192.0 {
        s1 * s1
    } else {
        s2.mul_add(j, s2) * s1
    }
}

/// ggml's vectorized SiLU: `x / (1 + expf(-x))`.
#[inline(always)]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + expf(0.0 - x))
}

/// `ggml_vec_swiglu_f32` in place: `x = silu(x) * g`, vector `expf` on whole 8-chunks, libm
/// `expf` on the tail.
pub fn swiglu(x: &mut [f32], g: &[f32]) {
    let whole = x.len() / 8 * 8;
    for (xi, gi) in x[..whole].iter_mut().zip(g) {
        *xi = silu(*xi) * gi;
    }
    for (xi, gi) in x[whole..].iter_mut().zip(&g[whole..]) {
        *xi = *xi / (1.0 + (-*xi).exp()) * gi;
    }
}

/// `ggml_vec_soft_max_f32`: `y = exp(x - max)`; whole 8-lane chunks use ggml's vector `expf`
/// and add their horizontal sum to a double, the tail uses libm `expf` one by one.
pub fn softmax_exp_sum(y: &mut [f32], max: f32) -> f64 {
    let mut sum = 0f64;
    let mut chunks = y.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut v = [0f32; 8];
        for (vi, yi) in v.iter_mut().zip(chunk.iter_mut()) {
            *yi = expf(*yi - max);
            *vi = *yi;
        }
        sum += f64::from(hsum8(&v));
    }
    for yi in chunks.into_remainder() {
        *yi = (*yi - max).exp();
        sum += f64::from(*yi);
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expf_is_close_to_libm() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (a, b) = (expf(x), x.exp());
            assert!(((a - b) / b).abs() < 3e-7, "exp({x}): {a} vs {b}");
            x += 0.173;
        }
        assert_eq!(expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf(0.0), 1.0);
    }

    #[test]
    fn dot_f16_equals_plain_sum_within_rounding() {
        let x: Vec<f16> = (0..100)
            .map(|i| f16::from_f32((i as f32 * 0.37).sin()))
            .collect();
        let y: Vec<f32> = (0..100).map(|i| (i as f32 * 0.11).cos()).collect();
        let plain: f32 = x.iter().zip(&y).map(|(a, b)| a.to_f32() * b).sum();
        assert!((dot_f16(&x, &y) - plain).abs() < 1e-4);
    }
}
