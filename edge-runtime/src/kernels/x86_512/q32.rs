//! The 32-element block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) for 16 rows at once.

// Index loops over the 4 transposed vectors mirror the block layout.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::super::{BlockQ8, ROWS16 as ROWS};
use super::base::*;

/// Q4_0: nibbles are the unsigned operand, so `isum = sum(n * q) - 8 * sum(q)`. The high
/// nibbles stay in place (`b & 0xf0`, 16 times their value): their sum is 16 times the exact
/// one (at most 16 x 240 x 128, far inside an i32), shifted down once per token instead of
/// each byte once per block, since 512-bit shifts share one port with `vpdpbusd` on Intel
/// cores.
#[inline]
#[target_feature(enable = "avx512f,avx512vnni")]
pub(super) fn q4_0_rows<const N: usize, const PACKED: bool>(
    w: &[u8],
    rb: usize,
    acts: [&[BlockQ8]; N],
) -> [__m512; N] {
    let nb = check(w, rb, 18, &acts);
    let (m4, m4_hi) = (_mm512_set1_epi8(0x0f), _mm512_set1_epi8(0xf0u8 as i8));
    let mut acc = [_mm512_setzero_ps(); N];
    let mut blocks = Blocks::<PACKED, 2>::new(w, rb, 18);
    let mut pf = PrefetchAhead::new::<PACKED>(w, rb, ROWS * 2 * nb, nb);
    for i in 0..nb {
        pf.step();
        let (p, dm) = blocks.block(i);
        // SAFETY: the 16 nibble bytes of block i of each of the 16 rows lie inside `w`.
        let b = unsafe { words4::<PACKED>(p, rb, 0) };
        let dw = f16_lo(dm);
        // No closures here: they would not inherit the target features.
        let (mut lo, mut hi16) = ([_mm512_setzero_si512(); 4], [_mm512_setzero_si512(); 4]);
        for g in 0..4 {
            lo[g] = _mm512_and_si512(b[g], m4);
            hi16[g] = _mm512_and_si512(b[g], m4_hi);
        }
        for t in 0..N {
            let y = &acts[t][i];
            let (mut s0, mut s1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
            for g in 0..4 {
                // Low nibbles are elements 4g.., high ones 16 + 4g..
                s0 = _mm512_dpbusd_epi32(s0, lo[g], bcast4(&y.qs, g));
                s1 = _mm512_dpbusd_epi32(s1, hi16[g], bcast4(&y.qs, 4 + g));
            }
            let s1 = _mm512_srai_epi32::<4>(s1);
            let isum = _mm512_sub_epi32(_mm512_add_epi32(s0, s1), _mm512_set1_epi32(8 * y.sum));
            let d = _mm512_mul_ps(dw, _mm512_set1_ps(y.d));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), d, acc[t]);
        }
    }
    acc
}

/// ggml's 8-lane arithmetic (`scalar::blocks_8lane`, which llama.cpp uses for Q8_0 and Q5_0
/// here: the model's logits move by up to 0.5 under another summation order). Transposed, lane
/// `k` of ggml's block (bytes `4k..4k+4`) is vector `k` here, so each of the 8 lanes keeps its
/// own accumulator vector and ggml's horizontal sum becomes vertical adds. `$unpack` gives the
/// block's weights from the address `$p` of its body (after the `$head` bytes of scale and min)
/// and the row stride `$rb`, in either layout: signed, or unsigned where `$unsigned` (Q4_1,
/// Q5_1). The scale is the block's first 2 bytes; where `$min`, the next 2 are the min, whose
/// term `m_w * s_a` is summed apart.
macro_rules! lanes_rows {
    ($name:ident, $bs:literal, $head:literal, $unsigned:literal, $min:literal,
     |$p:ident, $rb:ident| $unpack:expr) => {
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
        pub(super) fn $name<const N: usize, const PACKED: bool>(
            w: &[u8],
            rb: usize,
            acts: [&[BlockQ8]; N],
        ) -> [__m512; N] {
            let nb = check(w, rb, $bs, &acts);
            let flip = _mm512_set1_epi8(-128);
            let mut acc = [[_mm512_setzero_ps(); 8]; N];
            let mut summs = [_mm512_setzero_ps(); N];
            let mut blocks = Blocks::<PACKED, $head>::new(w, rb, $bs);
            let mut pf = PrefetchAhead::new::<PACKED>(w, rb, ROWS * $head * nb, nb);
            for i in 0..nb {
                pf.step();
                let (p, dm) = blocks.block(i);
                let dw = f16_lo(dm);
                // Vector k: the 16 rows' weights of elements 4k..4k+4.
                let wk: [__m512i; 8] = {
                    let ($p, $rb) = (p, rb);
                    $unpack
                };
                // Signed weights are the signed operand and activations `q + 128` the unsigned
                // one, so `lane = sum((q + 128) w) - 128 sum(w)`: the correction is per row,
                // shared by the tokens. Unsigned weights need none.
                let mut neg = [_mm512_setzero_si512(); 8];
                if !$unsigned {
                    for k in 0..8 {
                        let bias = _mm512_dpbusd_epi32(_mm512_setzero_si512(), flip, wk[k]);
                        neg[k] = _mm512_sub_epi32(_mm512_setzero_si512(), bias);
                    }
                }
                for t in 0..N {
                    let y = &acts[t][i];
                    let d = _mm512_mul_ps(dw, _mm512_set1_ps(y.d));
                    if $min {
                        // Not fused, as in the scalar twin: `offsets += m * y.s`.
                        let mw = f16_lo(_mm512_srli_epi32::<16>(dm));
                        summs[t] = _mm512_add_ps(summs[t], _mm512_mul_ps(mw, _mm512_set1_ps(y.s)));
                    }
                    for k in 0..8 {
                        let lane = if $unsigned {
                            _mm512_dpbusd_epi32(_mm512_setzero_si512(), wk[k], bcast4(&y.qs, k))
                        } else {
                            let qk = _mm512_xor_si512(bcast4(&y.qs, k), flip);
                            _mm512_dpbusd_epi32(neg[k], qk, wk[k])
                        };
                        acc[t][k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lane), d, acc[t][k]);
                    }
                }
            }
            let mut out = [_mm512_setzero_ps(); N];
            for t in 0..N {
                // Then the offset term (zero without mins, as in the scalar twin).
                out[t] = _mm512_add_ps(hsum8_lanes(&acc[t]), summs[t]);
            }
            out
        }
    };
}

lanes_rows!(q8_0_rows, 34, 2, false, false, |p, rb| {
    // SAFETY: the 32 quants of block i of each of the 16 rows lie inside `w` (checked).
    let (b0, b1) = unsafe { (words4::<PACKED>(p, rb, 0), words4::<PACKED>(p, rb, 4)) };
    [b0[0], b0[1], b0[2], b0[3], b1[0], b1[1], b1[2], b1[3]]
});

/// Transposed nibbles (`load_t16` of a block's 16 nibble bytes) as 8 vectors of elements
/// `4k..4k+4` (low nibbles first), unsigned 0..16.
#[inline]
#[target_feature(enable = "avx512f")]
fn nibbles8(b: [__m512i; 4]) -> [__m512i; 8] {
    let m4 = _mm512_set1_epi8(0x0f);
    let mut v = [_mm512_setzero_si512(); 8];
    for g in 0..4 {
        v[g] = _mm512_and_si512(b[g], m4);
        v[4 + g] = _mm512_and_si512(_mm512_srli_epi32::<4>(b[g]), m4);
    }
    v
}

/// Q5 values `nibble | fifth_bit << 4` (unsigned 0..32) from transposed nibbles and each row's
/// 32 fifth bits `qh` (bit `e` is element `e`'s).
#[inline]
#[target_feature(enable = "avx512f")]
fn q5_values(b: [__m512i; 4], qh: __m512i) -> [__m512i; 8] {
    // Bits 0..4 of `x` to bit 4 of bytes 0..4 (four shifted copies that never overlap).
    let (low4, spread, bit4) = (
        _mm512_set1_epi32(0xf),
        _mm512_set1_epi32(0x0204_0810),
        _mm512_set1_epi32(0x1010_1010),
    );
    let mut v = nibbles8(b);
    for g in 0..8 {
        let x = _mm512_and_si512(_mm512_srl_epi32(qh, _mm_cvtsi32_si128(4 * g as i32)), low4);
        let hb = _mm512_and_si512(_mm512_mullo_epi32(x, spread), bit4);
        v[g] = _mm512_or_si512(v[g], hb);
    }
    v
}

lanes_rows!(q4_1_rows, 20, 4, true, true, |p, rb| {
    // SAFETY: the 16 nibble bytes of block i of each of the 16 rows lie inside `w` (checked).
    nibbles8(unsafe { words4::<PACKED>(p, rb, 0) })
});

lanes_rows!(q5_0_rows, 22, 2, false, false, |p, rb| {
    // SAFETY: block i of each of the 16 rows lies inside `w` (checked): after the scale, 4
    // bytes of fifth bits, 16 of nibbles.
    let (b, qh) = unsafe { (words4::<PACKED>(p, rb, 1), word::<PACKED>(p, rb, 0)) };
    let mut v = q5_values(b, qh);
    for g in 0..8 {
        v[g] = _mm512_sub_epi8(v[g], _mm512_set1_epi8(16));
    }
    v
});

lanes_rows!(q5_1_rows, 24, 4, true, true, |p, rb| {
    // SAFETY: block i of each of the 16 rows lies inside `w` (checked): after scale and min, 4
    // bytes of fifth bits, 16 of nibbles.
    let (b, qh) = unsafe { (words4::<PACKED>(p, rb, 1), word::<PACKED>(p, rb, 0)) };
    q5_values(b, qh)
});
