//! The 32-element block formats Q4_0, Q4_1 and Q8_0 (ports of ggml-quants.c's reference code).
// Index loops are kept so the code reads line by line against ggml-quants.c.
#![allow(clippy::needless_range_loop)]

use super::float::{f16_to_f32, f32_to_f16};

pub const QK4_0: usize = 32;
pub const QK4_1: usize = 32;
pub const QK8_0: usize = 32;

/// `x = d * (q - 8)`, q in 0..16; low nibbles hold elements 0..16, high nibbles 16..32.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BlockQ4_0 {
    pub d: u16, // f16
    pub qs: [u8; QK4_0 / 2],
}

/// `x = d * q + m`, q in 0..16, nibbles laid out as in Q4_0.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BlockQ4_1 {
    pub d: u16, // f16
    pub m: u16, // f16
    pub qs: [u8; QK4_1 / 2],
}

/// `x = d * q`, q an i8.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BlockQ8_0 {
    pub d: u16, // f16
    pub qs: [i8; QK8_0],
}

const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(std::mem::size_of::<BlockQ4_1>() == 20);
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

pub fn quantize_row_q4_0(x: &[f32], y: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(QK4_0).zip(y.chunks_exact_mut(18)) {
        let mut amax = 0f32;
        let mut max = 0f32;
        for &v in xb {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        yb[0..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
        for j in 0..QK4_0 / 2 {
            let x0 = xb[j] * id;
            let x1 = xb[QK4_0 / 2 + j] * id;
            // C: MIN(15, (int8_t)(x + 8.5f)); the float-to-int8 cast truncates toward zero.
            let xi0 = ((x0 + 8.5) as i8).min(15) as u8;
            let xi1 = ((x1 + 8.5) as i8).min(15) as u8;
            yb[2 + j] = xi0 | (xi1 << 4);
        }
    }
}

pub fn dequantize_row_q4_0(x: &[u8], y: &mut [f32]) {
    for (xb, yb) in x.chunks_exact(18).zip(y.chunks_exact_mut(QK4_0)) {
        let d = f16_at(xb, 0);
        for j in 0..QK4_0 / 2 {
            let q = xb[2 + j];
            yb[j] = ((q & 0x0f) as i32 - 8) as f32 * d;
            yb[j + QK4_0 / 2] = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

pub fn quantize_row_q4_1(x: &[f32], y: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(QK4_1).zip(y.chunks_exact_mut(20)) {
        let mut min = f32::MAX;
        let mut max = -f32::MAX;
        for &v in xb {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        yb[0..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
        yb[2..4].copy_from_slice(&f32_to_f16(min).to_le_bytes());
        for j in 0..QK4_1 / 2 {
            let x0 = (xb[j] - min) * id;
            let x1 = (xb[QK4_1 / 2 + j] - min) * id;
            let xi0 = ((x0 + 0.5) as i8).min(15) as u8;
            let xi1 = ((x1 + 0.5) as i8).min(15) as u8;
            yb[4 + j] = xi0 | (xi1 << 4);
        }
    }
}

pub fn dequantize_row_q4_1(x: &[u8], y: &mut [f32]) {
    for (xb, yb) in x.chunks_exact(20).zip(y.chunks_exact_mut(QK4_1)) {
        let d = f16_at(xb, 0);
        let m = f16_at(xb, 2);
        for j in 0..QK4_1 / 2 {
            let q = xb[4 + j];
            yb[j] = (q & 0x0f) as f32 * d + m;
            yb[j + QK4_1 / 2] = (q >> 4) as f32 * d + m;
        }
    }
}

/// C's `roundf` (half away from zero, as Rust's `f32::round`) for |x| < 2^31, NaN to 0,
/// without a call: on the baseline x86-64 target `f32::round` is a libm call, which was a
/// seventh of Q8_0 quantization's time. `x - trunc(x)` is exact in f32.
#[inline]
pub(crate) fn round_half_away(x: f32) -> i32 {
    let t = x as i32;
    let frac = x - t as f32;
    if frac >= 0.5 {
        t + 1
    } else if frac <= -0.5 {
        t - 1
    } else {
        t
    }
}

pub fn quantize_row_q8_0(x: &[f32], y: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(QK8_0).zip(y.chunks_exact_mut(34)) {
        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        yb[0..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
        for j in 0..QK8_0 {
            yb[2 + j] = (round_half_away(xb[j] * id) as i8) as u8;
        }
    }
}

pub fn dequantize_row_q8_0(x: &[u8], y: &mut [f32]) {
    for (xb, yb) in x.chunks_exact(34).zip(y.chunks_exact_mut(QK8_0)) {
        let d = f16_at(xb, 0);
        for j in 0..QK8_0 {
            yb[j] = (xb[2 + j] as i8) as f32 * d;
        }
    }
}

pub const QK5_0: usize = 32;
pub const QK5_1: usize = 32;

/// `x = d * (q - 16)`, q 5 bits: low nibbles as in Q4_0, fifth bits packed in `qh` (bit j for
/// element j).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BlockQ5_0 {
    pub d: u16, // f16
    pub qh: [u8; 4],
    pub qs: [u8; QK5_0 / 2],
}

/// `x = d * q + m`, q 5 bits laid out as in Q5_0.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct BlockQ5_1 {
    pub d: u16, // f16
    pub m: u16, // f16
    pub qh: [u8; 4],
    pub qs: [u8; QK5_1 / 2],
}

const _: () = assert!(std::mem::size_of::<BlockQ5_0>() == 22);
const _: () = assert!(std::mem::size_of::<BlockQ5_1>() == 24);

pub fn quantize_row_q5_0(x: &[f32], y: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(QK5_0).zip(y.chunks_exact_mut(22)) {
        let mut amax = 0f32;
        let mut max = 0f32;
        for &v in xb {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        yb[0..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
        let mut qh = 0u32;
        for j in 0..QK5_0 / 2 {
            let x0 = xb[j] * id;
            let x1 = xb[QK5_0 / 2 + j] * id;
            let xi0 = ((x0 + 16.5) as i8).min(31) as u8;
            let xi1 = ((x1 + 16.5) as i8).min(31) as u8;
            yb[6 + j] = (xi0 & 0x0f) | ((xi1 & 0x0f) << 4);
            qh |= u32::from((xi0 & 0x10) >> 4) << j;
            qh |= u32::from((xi1 & 0x10) >> 4) << (j + QK5_0 / 2);
        }
        yb[2..6].copy_from_slice(&qh.to_le_bytes());
    }
}

pub fn dequantize_row_q5_0(x: &[u8], y: &mut [f32]) {
    for (xb, yb) in x.chunks_exact(22).zip(y.chunks_exact_mut(QK5_0)) {
        let d = f16_at(xb, 0);
        let qh = u32::from_le_bytes([xb[2], xb[3], xb[4], xb[5]]);
        for j in 0..QK5_0 / 2 {
            let xh0 = (((qh >> j) << 4) & 0x10) as u8;
            let xh1 = ((qh >> (j + 12)) & 0x10) as u8;
            let q = xb[6 + j];
            yb[j] = (((q & 0x0f) | xh0) as i32 - 16) as f32 * d;
            yb[j + QK5_0 / 2] = (((q >> 4) | xh1) as i32 - 16) as f32 * d;
        }
    }
}

pub fn quantize_row_q5_1(x: &[f32], y: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(QK5_1).zip(y.chunks_exact_mut(24)) {
        let mut min = f32::MAX;
        let mut max = -f32::MAX;
        for &v in xb {
            if v < min {
                min = v;
            }
            if v > max {
                max = v;
            }
        }
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        yb[0..2].copy_from_slice(&f32_to_f16(d).to_le_bytes());
        yb[2..4].copy_from_slice(&f32_to_f16(min).to_le_bytes());
        let mut qh = 0u32;
        for j in 0..QK5_1 / 2 {
            let x0 = (xb[j] - min) * id;
            let x1 = (xb[QK5_1 / 2 + j] - min) * id;
            let xi0 = (x0 + 0.5) as u8;
            let xi1 = (x1 + 0.5) as u8;
            yb[8 + j] = (xi0 & 0x0f) | ((xi1 & 0x0f) << 4);
            qh |= u32::from((xi0 & 0x10) >> 4) << j;
            qh |= u32::from((xi1 & 0x10) >> 4) << (j + QK5_1 / 2);
        }
        yb[4..8].copy_from_slice(&qh.to_le_bytes());
    }
}

pub fn dequantize_row_q5_1(x: &[u8], y: &mut [f32]) {
    for (xb, yb) in x.chunks_exact(24).zip(y.chunks_exact_mut(QK5_1)) {
        let d = f16_at(xb, 0);
        let m = f16_at(xb, 2);
        let qh = u32::from_le_bytes([xb[4], xb[5], xb[6], xb[7]]);
        for j in 0..QK5_1 / 2 {
            let xh0 = (((qh >> j) << 4) & 0x10) as u8;
            let xh1 = ((qh >> (j + 12)) & 0x10) as u8;
            let q = xb[8 + j];
            yb[j] = ((q & 0x0f) | xh0) as f32 * d + m;
            yb[j + QK5_1 / 2] = ((q >> 4) | xh1) as f32 * d + m;
        }
    }
}
