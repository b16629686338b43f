//! AVX-512 VNNI kernels (x86_64), selected only when `Isa::detect` found AVX-512F, BW and
//! VNNI. They take 16 consecutive weight rows at once with 32-bit lane `r` holding row `r`:
//! `vpdpbusd` sums 4 byte products per lane against 4 activation bytes broadcast to all lanes,
//! so no horizontal sums are needed. Rows come either from the file's layout (each block
//! transposed in registers: [`rows16`]) or from a copy packed at load ([`packed16`],
//! [`super::repack`]), which decode reads with plain sequential loads. Per row and block they
//! form the exact integer dots and fold them in the same order as llama.cpp: one FMA per block
//! in block order where llama.cpp repacks (Q4_0 and Q4_K: `scalar::dot_q4_0`,
//! `scalar::dot_q4_k_seq`), ggml's 8 lanes elsewhere (`scalar::dot_q8_0`, `dot_q5_k`,
//! `dot_q6_k`, ...), bit for bit.

mod attend;
mod base;
mod float;
mod kquant;
mod q32;

pub(crate) use attend::attend;
pub(crate) use base::xor_lines;
pub use float::row_dot4;

use base::{store, store_n};
use kquant::{q4_k_rows, q5_k_rows, q6_k_rows};
use q32::{q4_0_rows, q4_1_rows, q5_0_rows, q5_1_rows, q8_0_rows};

use super::{BlockQ8, BlockQ8K, Dot16, Rows16, Rows16x4, ROWS16 as ROWS};
use llama_spec::gguf::GgmlType;

pub fn rows16(ty: GgmlType) -> Option<Dot16> {
    Some(match ty {
        GgmlType::Q4_0 => q8(q4_0_1, q4_0_4, true),
        // Measured: Q8_0's 32 bytes a block make the transposes cost more than the AVX2 decode
        // kernel saves (148 against 158 to 179 tokens/s on SmolLM2-135M, side by side).
        GgmlType::Q8_0 => q8(q8_0_1, q8_0_4, false),
        GgmlType::Q5_0 => q8(q5_0_1, q5_0_4, true),
        GgmlType::Q4_1 => q8(q4_1_1, q4_1_4, true),
        GgmlType::Q5_1 => q8(q5_1_1, q5_1_4, true),
        GgmlType::Q4_K => q8k(q4_k_1, q4_k_4),
        GgmlType::Q5_K => q8k(q5_k_1, q5_k_4),
        GgmlType::Q6_K => q8k(q6_k_1, q6_k_4),
        _ => return None,
    })
}

/// Kernels over packed groups of 16 rows ([`super::repack`]), where they exist: the same
/// arithmetic as [`rows16`]'s, from the packed layout.
pub fn packed16(ty: GgmlType) -> Option<Dot16> {
    Some(match ty {
        GgmlType::Q4_0 => q8(q4_0p_1, q4_0p_4, true),
        GgmlType::Q4_1 => q8(q4_1p_1, q4_1p_4, true),
        GgmlType::Q5_0 => q8(q5_0p_1, q5_0p_4, true),
        GgmlType::Q5_1 => q8(q5_1p_1, q5_1p_4, true),
        GgmlType::Q8_0 => q8(q8_0p_1, q8_0p_4, true),
        GgmlType::Q4_K => q8k(q4_kp_1, q4_kp_4),
        GgmlType::Q5_K => q8k(q5_kp_1, q5_kp_4),
        GgmlType::Q6_K => q8k(q6_kp_1, q6_kp_4),
        _ => return None,
    })
}

type One<A> = fn(&[u8], usize, &[A]) -> [f32; ROWS];

fn q8(one: One<BlockQ8>, four: Rows16x4<BlockQ8>, decode: bool) -> Dot16 {
    Dot16::Q8(Rows16 { one, four, decode })
}

fn q8k(one: One<BlockQ8K>, four: Rows16x4<BlockQ8K>) -> Dot16 {
    Dot16::Q8K(Rows16 {
        one,
        four,
        decode: true,
    })
}

macro_rules! entry_points {
    ($($a:ty: $rows:ident::<$packed:literal>, $one:ident, $four:ident;)*) => {$(
        fn $one(w: &[u8], rb: usize, a: &[$a]) -> [f32; ROWS] {
            #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
            fn inner(w: &[u8], rb: usize, a: &[$a]) -> [f32; ROWS] {
                store(&$rows::<1, $packed>(w, rb, [a]))
            }
            // SAFETY: handed out by `rows16` only after `Isa::detect` confirmed AVX-512F,
            // AVX-512BW and AVX-512 VNNI at run time.
            unsafe { inner(w, rb, a) }
        }
        fn $four(w: &[u8], rb: usize, a: [&[$a]; 4]) -> [[f32; ROWS]; 4] {
            #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
            fn inner(w: &[u8], rb: usize, a: [&[$a]; 4]) -> [[f32; ROWS]; 4] {
                store_n(&$rows::<4, $packed>(w, rb, a))
            }
            // SAFETY: as above.
            unsafe { inner(w, rb, a) }
        }
    )*};
}

entry_points! {
    BlockQ8: q4_0_rows::<false>, q4_0_1, q4_0_4;
    BlockQ8: q8_0_rows::<false>, q8_0_1, q8_0_4;
    BlockQ8: q5_0_rows::<false>, q5_0_1, q5_0_4;
    BlockQ8: q4_1_rows::<false>, q4_1_1, q4_1_4;
    BlockQ8: q5_1_rows::<false>, q5_1_1, q5_1_4;
    BlockQ8K: q4_k_rows::<false>, q4_k_1, q4_k_4;
    BlockQ8K: q5_k_rows::<false>, q5_k_1, q5_k_4;
    BlockQ8K: q6_k_rows::<false>, q6_k_1, q6_k_4;
    BlockQ8: q4_0_rows::<true>, q4_0p_1, q4_0p_4;
    BlockQ8: q8_0_rows::<true>, q8_0p_1, q8_0p_4;
    BlockQ8: q5_0_rows::<true>, q5_0p_1, q5_0p_4;
    BlockQ8: q4_1_rows::<true>, q4_1p_1, q4_1p_4;
    BlockQ8: q5_1_rows::<true>, q5_1p_1, q5_1p_4;
    BlockQ8K: q4_k_rows::<true>, q4_kp_1, q4_kp_4;
    BlockQ8K: q5_k_rows::<true>, q5_kp_1, q5_kp_4;
    BlockQ8K: q6_k_rows::<true>, q6_kp_1, q6_kp_4;
}
