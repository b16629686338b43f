//! AVX-512 VNNI kernels (x86_64), selected only when `Isa::detect` found AVX-512F and
//! AVX-512 VNNI. They take 16 consecutive weight rows at once and transpose each block in
//! registers so that 32-bit lane `r` holds row `r`: `vpdpbusd` then sums 4 byte products per
//! lane against 4 activation bytes broadcast to all lanes, so no horizontal sums are needed and
//! the weights stay in the file's layout (no repacked copy). Per row and block they form the
//! exact integer dots and fold them in the same order as llama.cpp: with one FMA per block,
//! `acc = fma(isum, d_w * d_a, acc)` in block order (Q4_0, bit for bit `scalar::dot_q4_0`), or in ggml's 8 lanes (Q8_0, bit for bit
//! `scalar::dot_q8_0`).

// Index loops over the 4 transposed vectors mirror the block layout.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::{BlockQ8, BlockQ8K, Dot16, Rows16, ROWS16 as ROWS};
use llama_spec::gguf::GgmlType;

pub fn rows16(ty: GgmlType) -> Option<Dot16> {
    let q8 = |one, four, decode| Dot16::Q8(Rows16 { one, four, decode });
    Some(match ty {
        GgmlType::Q4_0 => q8(q4_0_1, q4_0_4, true),
        // Measured: Q8_0's 32 bytes a block make the transposes cost more than the AVX2 decode
        // kernel saves (148 against 158 to 179 tokens/s on SmolLM2-135M, side by side).
        GgmlType::Q8_0 => q8(q8_0_1, q8_0_4, false),
        GgmlType::Q5_0 => q8(q5_0_1, q5_0_4, true),
        GgmlType::Q4_1 => q8(q4_1_1, q4_1_4, true),
        GgmlType::Q5_1 => q8(q5_1_1, q5_1_4, true),
        GgmlType::Q4_K => Dot16::Q8K(Rows16 {
            one: q4_k_1,
            four: q4_k_4,
            decode: true,
        }),
        _ => return None,
    })
}

#[inline]
#[target_feature(enable = "avx512f")]
fn load16(p: *const u8) -> __m128i {
    // SAFETY: the callers pass pointers to 16 readable bytes; unaligned load.
    unsafe { _mm_loadu_si128(p.cast()) }
}

/// 16 bytes at `p + r * rb` for the 16 rows `r`, transposed: in vector `g`, lane `r` holds
/// row `r`'s bytes `4g..4g+4`.
///
/// # Safety
/// `p + r * rb + 16` must be readable for every `r < 16`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load_t16(p: *const u8, rb: usize) -> [__m512i; 4] {
    // a[m], 128-bit lane l: row 4l + m.
    let mut a = [_mm512_setzero_si512(); 4];
    for m in 0..4 {
        // SAFETY: rows m, 4+m, 8+m, 12+m are below 16 (the caller's promise).
        let row = |l: usize| unsafe { p.add((4 * l + m) * rb) };
        let v = _mm512_castsi128_si512(load16(row(0)));
        let v = _mm512_inserti32x4::<1>(v, load16(row(1)));
        let v = _mm512_inserti32x4::<2>(v, load16(row(2)));
        a[m] = _mm512_inserti32x4::<3>(v, load16(row(3)));
    }
    // A 4x4 transpose of dwords inside each 128-bit lane: lane l, dword m of output g is
    // dword g of row 4l + m.
    let t0 = _mm512_unpacklo_epi32(a[0], a[1]);
    let t1 = _mm512_unpackhi_epi32(a[0], a[1]);
    let t2 = _mm512_unpacklo_epi32(a[2], a[3]);
    let t3 = _mm512_unpackhi_epi32(a[2], a[3]);
    [
        _mm512_unpacklo_epi64(t0, t2),
        _mm512_unpackhi_epi64(t0, t2),
        _mm512_unpacklo_epi64(t1, t3),
        _mm512_unpackhi_epi64(t1, t3),
    ]
}

/// The first dword of block `i` (of `bs` bytes) in each of the 16 rows (scale, and min where
/// there is one), or zeros past the last block: kernels load it a block ahead, since the 16
/// loads' latency would otherwise stall the block's first FMA.
#[inline]
#[target_feature(enable = "avx512f")]
fn block_dwords(w: &[u8], rb: usize, bs: usize, i: usize) -> __m512i {
    if (i + 1) * bs > rb || w.len() < ROWS * rb {
        return _mm512_setzero_si512();
    }
    // SAFETY: block i lies inside each of the 16 rows of `w` (checked just above).
    unsafe { dwords16(w.as_ptr().add(i * bs), rb) }
}

/// The low halves of 16 dwords as f16, to floats.
#[inline]
#[target_feature(enable = "avx512f")]
fn f16_lo(v: __m512i) -> __m512 {
    _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v))
}

/// Prefetches block `i`'s share (of `nb`) of the 16 rows after `w` (adjacent in the matrix,
/// where there are any) while these are read: rows are short and read 16 at a time, which
/// the hardware prefetcher does not follow.
#[inline]
#[target_feature(enable = "avx512f")]
fn prefetch_next(w: &[u8], rb: usize, i: usize, nb: usize) {
    let next = w.as_ptr().wrapping_add(ROWS * rb);
    let lines = (ROWS * rb).div_ceil(64);
    for l in i * lines / nb..(i + 1) * lines / nb {
        // A hint: it never faults, whatever the address.
        _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(64 * l).cast());
    }
}

/// The dword at `p + r * rb` for the 16 rows `r`: 16 plain loads, which beat `vpgatherdd`
/// (microcoded on Zen 4) here.
///
/// # Safety
/// `p + r * rb + 4` must be readable for every `r < 16`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn dwords16(p: *const u8, rb: usize) -> __m512i {
    // SAFETY: the caller's promise; unaligned reads.
    let d = |r: usize| unsafe { p.add(r * rb).cast::<i32>().read_unaligned() };
    let x = |r: usize| _mm_setr_epi32(d(r), d(r + 1), d(r + 2), d(r + 3));
    let v = _mm512_castsi128_si512(x(0));
    let v = _mm512_inserti32x4::<1>(v, x(4));
    let v = _mm512_inserti32x4::<2>(v, x(8));
    _mm512_inserti32x4::<3>(v, x(12))
}

/// 4 activation bytes `qs[4k..4k+4]` broadcast to every lane.
#[inline]
#[target_feature(enable = "avx512f")]
fn bcast4(qs: &[i8], k: usize) -> __m512i {
    let b = &qs[4 * k..4 * k + 4];
    _mm512_set1_epi32(i32::from_le_bytes([
        b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8,
    ]))
}

#[inline]
#[target_feature(enable = "avx512f")]
fn store(acc: &[__m512; 1]) -> [f32; ROWS] {
    let mut out = [0f32; ROWS];
    // SAFETY: 16 writable floats; unaligned store.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), acc[0]) };
    out
}

#[inline]
#[target_feature(enable = "avx512f")]
fn store_n<const N: usize>(acc: &[__m512; N]) -> [[f32; ROWS]; N] {
    let mut out = [[0f32; ROWS]; N];
    for t in 0..N {
        // SAFETY: 16 writable floats; unaligned store.
        unsafe { _mm512_storeu_ps(out[t].as_mut_ptr(), acc[t]) };
    }
    out
}

/// Checks the shapes the unsafe loads rely on; returns the number of blocks per row.
fn check(w: &[u8], rb: usize, bs: usize, acts: &[&[BlockQ8]]) -> usize {
    let nb = rb / bs;
    assert!(rb == nb * bs && w.len() >= ROWS * rb, "16 whole rows");
    assert!(acts.iter().all(|a| a.len() >= nb), "activations per row");
    nb
}

/// Q4_0: nibbles are the unsigned operand, so `isum = sum(n * q) - 8 * sum(q)`.
#[inline]
#[target_feature(enable = "avx512f,avx512vnni")]
fn q4_0_rows<const N: usize>(w: &[u8], rb: usize, acts: [&[BlockQ8]; N]) -> [__m512; N] {
    let nb = check(w, rb, 18, &acts);
    let m4 = _mm512_set1_epi8(0x0f);
    let mut acc = [_mm512_setzero_ps(); N];
    let mut dm_next = block_dwords(w, rb, 18, 0);
    for i in 0..nb {
        prefetch_next(w, rb, i, nb);
        let p = w.as_ptr().wrapping_add(18 * i);
        // SAFETY: block i of each of the 16 rows lies inside `w` (checked above): 2 bytes of
        // scale, then 16 of nibbles.
        let b = unsafe { load_t16(p.add(2), rb) };
        let dw = f16_lo(dm_next);
        dm_next = block_dwords(w, rb, 18, i + 1);
        // No closures here: they would not inherit the target features.
        let (mut lo, mut hi) = ([_mm512_setzero_si512(); 4], [_mm512_setzero_si512(); 4]);
        for g in 0..4 {
            lo[g] = _mm512_and_si512(b[g], m4);
            hi[g] = _mm512_and_si512(_mm512_srli_epi32::<4>(b[g]), m4);
        }
        for t in 0..N {
            let y = &acts[t][i];
            let (mut s0, mut s1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
            for g in 0..4 {
                // Low nibbles are elements 4g.., high ones 16 + 4g..
                s0 = _mm512_dpbusd_epi32(s0, lo[g], bcast4(&y.qs, g));
                s1 = _mm512_dpbusd_epi32(s1, hi[g], bcast4(&y.qs, 4 + g));
            }
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
/// block's weights from its address `$p` and the row stride `$rb`: signed, or unsigned where `$unsigned` (Q4_1, Q5_1). The scale is the block's first 2 bytes;
/// where `$min`, the next 2 are the min, whose term `m_w * s_a` is summed apart.
macro_rules! lanes_rows {
    ($name:ident, $bs:literal, $unsigned:literal, $min:literal,
     |$p:ident, $rb:ident| $unpack:expr) => {
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
        fn $name<const N: usize>(w: &[u8], rb: usize, acts: [&[BlockQ8]; N]) -> [__m512; N] {
            let nb = check(w, rb, $bs, &acts);
            let flip = _mm512_set1_epi8(-128);
            let mut acc = [[_mm512_setzero_ps(); 8]; N];
            let mut summs = [_mm512_setzero_ps(); N];
            let mut dm_next = block_dwords(w, rb, $bs, 0);
            for i in 0..nb {
                prefetch_next(w, rb, i, nb);
                let p = w.as_ptr().wrapping_add($bs * i);
                let dm = dm_next;
                dm_next = block_dwords(w, rb, $bs, i + 1);
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
                // ggml's `hsum_float_8`: lanes k and k + 4 first, then (0 + 2) + (1 + 3); then
                // the offset term (zero without mins, as in the scalar twin).
                let a = &acc[t];
                let r: [__m512; 4] = [
                    _mm512_add_ps(a[0], a[4]),
                    _mm512_add_ps(a[1], a[5]),
                    _mm512_add_ps(a[2], a[6]),
                    _mm512_add_ps(a[3], a[7]),
                ];
                let s = _mm512_add_ps(_mm512_add_ps(r[0], r[2]), _mm512_add_ps(r[1], r[3]));
                out[t] = _mm512_add_ps(s, summs[t]);
            }
            out
        }
    };
}

lanes_rows!(q8_0_rows, 34, false, false, |p, rb| {
    // SAFETY: block i of each of the 16 rows lies inside `w` (checked): 2 bytes of scale, then
    // 32 quants.
    let (b0, b1) = unsafe { (load_t16(p.add(2), rb), load_t16(p.add(18), rb)) };
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

lanes_rows!(q4_1_rows, 20, true, true, |p, rb| {
    // SAFETY: block i of each of the 16 rows lies inside `w` (checked): 2 bytes of scale, 2 of
    // min, 16 of nibbles.
    nibbles8(unsafe { load_t16(p.add(4), rb) })
});

lanes_rows!(q5_0_rows, 22, false, false, |p, rb| {
    // SAFETY: block i of each of the 16 rows lies inside `w` (checked): 2 bytes of scale, 4 of
    // fifth bits, 16 of nibbles.
    let (b, qh) = unsafe { (load_t16(p.add(6), rb), dwords16(p.add(2), rb)) };
    let mut v = q5_values(b, qh);
    for g in 0..8 {
        v[g] = _mm512_sub_epi8(v[g], _mm512_set1_epi8(16));
    }
    v
});

lanes_rows!(q5_1_rows, 24, true, true, |p, rb| {
    // SAFETY: block i of each of the 16 rows lies inside `w` (checked): 2 bytes of scale, 2 of
    // min, 4 of fifth bits, 16 of nibbles.
    let (b, qh) = unsafe { (load_t16(p.add(8), rb), dwords16(p.add(4), rb)) };
    q5_values(b, qh)
});

/// Each 32-bit lane's bytes 0 and 1 (`lo`) or 2 and 3 (`hi`), widened to two i16.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn byte_pairs(v: __m512i, hi: bool) -> __m512i {
    // Byte indexes inside each 128-bit lane (the same in all four); -1 gives zero.
    let o = if hi { 2 } else { 0 };
    #[rustfmt::skip]
    let ctl = _mm512_broadcast_i32x4(_mm_setr_epi8(
        o, -1, 1 + o, -1, 4 + o, -1, 5 + o, -1, 8 + o, -1, 9 + o, -1, 12 + o, -1, 13 + o, -1,
    ));
    _mm512_shuffle_epi8(v, ctl)
}

/// Q4_K in llama.cpp's repacked arithmetic (`scalar::dot_q4_k_seq`): per super-block and row
/// the exact `sum_j sc_j * dot_j` and `sum_j mn_j * bsum_j`, each folded in with one FMA.
/// Nibbles are unsigned, so `vpdpbusd` needs no correction; the 6-bit scales and mins are
/// unpacked for 16 rows at once from the transposed scale bytes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn q4_k_rows<const N: usize>(w: &[u8], rb: usize, acts: [&[BlockQ8K]; N]) -> [__m512; N] {
    let nb = rb / 144;
    assert!(rb == nb * 144 && w.len() >= ROWS * rb, "16 whole rows");
    assert!(acts.iter().all(|a| a.len() >= nb), "activations per row");
    let m4 = _mm512_set1_epi8(0x0f);
    let m6 = _mm512_set1_epi8(0x3f);
    let m30 = _mm512_set1_epi8(0x30);
    let m8 = _mm512_set1_epi32(0xff);
    let mut acc = [_mm512_setzero_ps(); N];
    let mut acc_min = [_mm512_setzero_ps(); N];
    let mut dm_next = block_dwords(w, rb, 144, 0);
    for i in 0..nb {
        prefetch_next(w, rb, i, nb);
        let p = w.as_ptr().wrapping_add(144 * i);
        // d and dmin: two f16 in one dword.
        let dm = dm_next;
        dm_next = block_dwords(w, rb, 144, i + 1);
        let (dw, mw) = (f16_lo(dm), f16_lo(_mm512_srli_epi32::<16>(dm)));
        // SAFETY: bytes 4..20 of block i of each row lie inside `w`.
        let s = unsafe { load_t16(p.add(4), rb) };
        // Bytes of lane r: scales 0..4, mins 0..4, scales 4..8, mins 4..8 (get_scale_min_k4).
        let sc_lo = _mm512_and_si512(s[0], m6);
        let mn_lo = _mm512_and_si512(s[1], m6);
        let sc_hi = _mm512_or_si512(
            _mm512_and_si512(s[2], m4),
            _mm512_and_si512(_mm512_srli_epi32::<2>(s[0]), m30),
        );
        let mn_hi = _mm512_or_si512(
            _mm512_and_si512(_mm512_srli_epi32::<4>(s[2]), m4),
            _mm512_and_si512(_mm512_srli_epi32::<2>(s[1]), m30),
        );
        let mut sc = [_mm512_setzero_si512(); 8];
        for j in 0..4 {
            let sh = _mm_cvtsi32_si128(8 * j as i32);
            sc[j] = _mm512_and_si512(_mm512_srl_epi32(sc_lo, sh), m8);
            sc[4 + j] = _mm512_and_si512(_mm512_srl_epi32(sc_hi, sh), m8);
        }
        // Mins as i16 pairs (0, 1), (2, 3), (4, 5), (6, 7) for `vpmaddwd`.
        let mnp = [
            byte_pairs(mn_lo, false),
            byte_pairs(mn_lo, true),
            byte_pairs(mn_hi, false),
            byte_pairs(mn_hi, true),
        ];
        let mut sum = [_mm512_setzero_si512(); N];
        for j in 0..4 {
            // SAFETY: bytes 16 + 32j .. 16 + 32(j + 1) of block i of each row lie in `w`.
            let (b0, b1) = unsafe {
                (
                    load_t16(p.add(16 + 32 * j), rb),
                    load_t16(p.add(32 + 32 * j), rb),
                )
            };
            let b = [b0[0], b0[1], b0[2], b0[3], b1[0], b1[1], b1[2], b1[3]];
            let mut lo = [_mm512_setzero_si512(); 8];
            let mut hi = [_mm512_setzero_si512(); 8];
            for g in 0..8 {
                lo[g] = _mm512_and_si512(b[g], m4);
                hi[g] = _mm512_and_si512(_mm512_srli_epi32::<4>(b[g]), m4);
            }
            for t in 0..N {
                let qs = &acts[t][i].qs[64 * j..64 * j + 64];
                let (mut dl, mut dh) = (_mm512_setzero_si512(), _mm512_setzero_si512());
                for g in 0..8 {
                    dl = _mm512_dpbusd_epi32(dl, lo[g], bcast4(qs, g));
                    dh = _mm512_dpbusd_epi32(dh, hi[g], bcast4(qs, 8 + g));
                }
                sum[t] = _mm512_add_epi32(
                    sum[t],
                    _mm512_add_epi32(
                        _mm512_mullo_epi32(dl, sc[2 * j]),
                        _mm512_mullo_epi32(dh, sc[2 * j + 1]),
                    ),
                );
            }
        }
        for t in 0..N {
            let y = &acts[t][i];
            let mut mins = _mm512_setzero_si512();
            for k in 0..4 {
                // Activation sums of sub-blocks 2k and 2k + 1, as an i16 pair.
                let q8s = |j: usize| y.bsums[2 * j] as i32 + y.bsums[2 * j + 1] as i32;
                let pair = (q8s(2 * k) & 0xffff) | (q8s(2 * k + 1) << 16);
                mins = _mm512_add_epi32(mins, _mm512_madd_epi16(mnp[k], _mm512_set1_epi32(pair)));
            }
            let da = _mm512_set1_ps(y.d);
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[t]), _mm512_mul_ps(dw, da), acc[t]);
            acc_min[t] =
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(mins), _mm512_mul_ps(mw, da), acc_min[t]);
        }
    }
    let mut out = [_mm512_setzero_ps(); N];
    for t in 0..N {
        out[t] = _mm512_sub_ps(acc[t], acc_min[t]);
    }
    out
}

macro_rules! entry_points {
    ($($a:ty: $rows:ident, $one:ident, $four:ident;)*) => {$(
        fn $one(w: &[u8], rb: usize, a: &[$a]) -> [f32; ROWS] {
            #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
            fn inner(w: &[u8], rb: usize, a: &[$a]) -> [f32; ROWS] {
                store(&$rows(w, rb, [a]))
            }
            // SAFETY: handed out by `rows16` only after `Isa::detect` confirmed AVX-512F,
            // AVX-512BW and AVX-512 VNNI at run time.
            unsafe { inner(w, rb, a) }
        }
        fn $four(w: &[u8], rb: usize, a: [&[$a]; 4]) -> [[f32; ROWS]; 4] {
            #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
            fn inner(w: &[u8], rb: usize, a: [&[$a]; 4]) -> [[f32; ROWS]; 4] {
                store_n(&$rows(w, rb, a))
            }
            // SAFETY: as above.
            unsafe { inner(w, rb, a) }
        }
    )*};
}

entry_points! {
    BlockQ8: q4_0_rows, q4_0_1, q4_0_4;
    BlockQ8: q8_0_rows, q8_0_1, q8_0_4;
    BlockQ8: q5_0_rows, q5_0_1, q5_0_4;
    BlockQ8: q4_1_rows, q4_1_1, q4_1_4;
    BlockQ8: q5_1_rows, q5_1_1, q5_1_4;
    BlockQ8K: q4_k_rows, q4_k_1, q4_k_4;
}
