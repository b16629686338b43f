//! ggml block formats: dequantization and reference quantization, bit-exact with ggml's
//! `quantize_row_*_ref` / `dequantize_row_*` (checked against fixtures made by ggml itself).
//!
//! All functions work on whole rows: `x.len()` must be a multiple of the block size, and the
//! byte buffer must be exactly `row_bytes(x.len())` long.

mod float;
mod kquants;
mod legacy;

pub use float::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16};
pub use kquants::{
    dequantize_row_q4_k, dequantize_row_q5_k, dequantize_row_q6_k, dequantize_row_q8_k,
    get_scale_min_k4, quantize_block_q8_k, quantize_row_q4_k, quantize_row_q5_k, quantize_row_q6_k,
    quantize_row_q8_k, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K, QK_K,
};
pub use legacy::{
    dequantize_row_q4_0, dequantize_row_q4_1, dequantize_row_q5_0, dequantize_row_q5_1,
    dequantize_row_q8_0, quantize_row_q4_0, quantize_row_q4_1, quantize_row_q5_0,
    quantize_row_q5_1, quantize_row_q8_0, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0,
    QK4_0, QK4_1, QK5_0, QK5_1, QK8_0,
};

use crate::gguf::GgmlType;

/// Why a buffer could not be (de)quantized.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    #[error("{0} is not supported for (de)quantization")]
    Unsupported(GgmlType),
    #[error("{ty}: {n} values is not a multiple of the block size {block}")]
    NotBlockAligned { ty: GgmlType, n: usize, block: u64 },
    #[error("{ty}: {n} values need {expected} bytes, buffer has {found}")]
    WrongLength {
        ty: GgmlType,
        n: usize,
        expected: usize,
        found: usize,
    },
}

/// Types this module can both quantize and dequantize.
pub const SUPPORTED: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_K,
];

fn check(ty: GgmlType, n: usize, bytes: usize) -> Result<(), QuantError> {
    if !SUPPORTED.contains(&ty) {
        return Err(QuantError::Unsupported(ty));
    }
    let expected = ty.row_bytes(n as u64).ok_or(QuantError::NotBlockAligned {
        ty,
        n,
        block: ty.block_size(),
    })? as usize;
    if expected != bytes {
        return Err(QuantError::WrongLength {
            ty,
            n,
            expected,
            found: bytes,
        });
    }
    Ok(())
}

/// Dequantize `src` (blocks of type `ty`) into `dst`.
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    check(ty, dst.len(), src.len())?;
    match ty {
        GgmlType::F32 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        GgmlType::F16 => {
            // In runs, so that `half` converts with F16C where the CPU has it (exact either way).
            use half::slice::HalfFloatSliceExt;
            let mut h = [half::f16::ZERO; 256];
            for (d, c) in dst.chunks_mut(256).zip(src.chunks(512)) {
                let h = &mut h[..d.len()];
                for (h, b) in h.iter_mut().zip(c.chunks_exact(2)) {
                    *h = half::f16::from_bits(u16::from_le_bytes([b[0], b[1]]));
                }
                h.convert_to_f32_slice(d);
            }
        }
        GgmlType::BF16 => {
            for (d, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = bf16_to_f32(u16::from_le_bytes([c[0], c[1]]));
            }
        }
        GgmlType::Q4_0 => dequantize_row_q4_0(src, dst),
        GgmlType::Q4_1 => dequantize_row_q4_1(src, dst),
        GgmlType::Q5_0 => dequantize_row_q5_0(src, dst),
        GgmlType::Q5_1 => dequantize_row_q5_1(src, dst),
        GgmlType::Q8_0 => dequantize_row_q8_0(src, dst),
        GgmlType::Q4_K => dequantize_row_q4_k(src, dst),
        GgmlType::Q5_K => dequantize_row_q5_k(src, dst),
        GgmlType::Q6_K => dequantize_row_q6_k(src, dst),
        GgmlType::Q8_K => dequantize_row_q8_k(src, dst),
        other => return Err(QuantError::Unsupported(other)),
    }
    Ok(())
}

/// Quantize `src` into `dst` (blocks of type `ty`) with ggml's reference quantizer.
pub fn quantize(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    check(ty, src.len(), dst.len())?;
    match ty {
        GgmlType::F32 => {
            for (c, x) in dst.chunks_exact_mut(4).zip(src) {
                c.copy_from_slice(&x.to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for (c, x) in dst.chunks_exact_mut(2).zip(src) {
                c.copy_from_slice(&f32_to_f16(*x).to_le_bytes());
            }
        }
        GgmlType::BF16 => {
            for (c, x) in dst.chunks_exact_mut(2).zip(src) {
                c.copy_from_slice(&f32_to_bf16(*x).to_le_bytes());
            }
        }
        GgmlType::Q4_0 => quantize_row_q4_0(src, dst),
        GgmlType::Q4_1 => quantize_row_q4_1(src, dst),
        GgmlType::Q5_0 => quantize_row_q5_0(src, dst),
        GgmlType::Q5_1 => quantize_row_q5_1(src, dst),
        GgmlType::Q8_0 => quantize_row_q8_0(src, dst),
        GgmlType::Q4_K => quantize_row_q4_k(src, dst),
        GgmlType::Q5_K => quantize_row_q5_k(src, dst),
        GgmlType::Q6_K => quantize_row_q6_k(src, dst),
        GgmlType::Q8_K => quantize_row_q8_k(src, dst),
        other => return Err(QuantError::Unsupported(other)),
    }
    Ok(())
}

/// Dequantize into a new vector.
pub fn dequantize_to_vec(ty: GgmlType, src: &[u8], n: usize) -> Result<Vec<f32>, QuantError> {
    let mut out = vec![0f32; n];
    dequantize(ty, src, &mut out)?;
    Ok(out)
}

/// Quantize into a new vector.
pub fn quantize_to_vec(ty: GgmlType, src: &[f32]) -> Result<Vec<u8>, QuantError> {
    let n = ty
        .row_bytes(src.len() as u64)
        .ok_or(QuantError::NotBlockAligned {
            ty,
            n: src.len(),
            block: ty.block_size(),
        })?;
    let mut out = vec![0u8; n as usize];
    quantize(ty, src, &mut out)?;
    Ok(out)
}

/// ggml's `nearest_int`: round half to even via the 1.5*2^23 magic number, valid for
/// |x| <= 2^22 (as ggml asserts); reproduced exactly, including its behaviour outside that range.
#[inline]
pub(crate) fn nearest_int(x: f32) -> i32 {
    let val = x + 12_582_912.0;
    let i = val.to_bits() as i32;
    (i & 0x007f_ffff) - 0x0040_0000
}

#[cfg(test)]
mod tests;
