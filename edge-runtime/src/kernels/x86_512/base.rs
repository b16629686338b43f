//! How the 16-row kernels read 16 rows' blocks, in the file's layout (strided loads
//! transposed in registers) or packed ([`super::super::repack`]: one load per word of 16 rows),
//! and the small helpers they share.

// Index loops over the 4 transposed vectors mirror the block layout.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

pub(super) use super::super::x86_base::PrefetchAhead;
use super::super::{BlockQ8, ROWS16 as ROWS};

#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn load16(p: *const u8) -> __m128i {
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
pub(super) unsafe fn load_t16(p: *const u8, rb: usize) -> [__m512i; 4] {
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
pub(super) fn block_dwords(w: &[u8], rb: usize, bs: usize, i: usize) -> __m512i {
    if (i + 1) * bs > rb || w.len() < ROWS * rb {
        return _mm512_setzero_si512();
    }
    // SAFETY: block i lies inside each of the 16 rows of `w` (checked just above).
    unsafe { dwords16(w.as_ptr().add(i * bs), rb) }
}

/// The low halves of 16 dwords as f16, to floats.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn f16_lo(v: __m512i) -> __m512 {
    _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v))
}

/// The dword at `p + r * rb` for the 16 rows `r`: 16 plain loads, which beat `vpgatherdd`
/// (microcoded on Zen 4) here.
///
/// # Safety
/// `p + r * rb + 4` must be readable for every `r < 16`.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn dwords16(p: *const u8, rb: usize) -> __m512i {
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
pub(super) fn bcast4(qs: &[i8], k: usize) -> __m512i {
    let b = &qs[4 * k..4 * k + 4];
    _mm512_set1_epi32(i32::from_le_bytes([
        b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8,
    ]))
}

#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn store(acc: &[__m512; 1]) -> [f32; ROWS] {
    let mut out = [0f32; ROWS];
    // SAFETY: 16 writable floats; unaligned store.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), acc[0]) };
    out
}

#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn store_n<const N: usize>(acc: &[__m512; N]) -> [[f32; ROWS]; N] {
    let mut out = [[0f32; ROWS]; N];
    for t in 0..N {
        // SAFETY: 16 writable floats; unaligned store.
        unsafe { _mm512_storeu_ps(out[t].as_mut_ptr(), acc[t]) };
    }
    out
}

/// Checks the shapes the unsafe loads rely on; returns the number of blocks per row.
pub(super) fn check(w: &[u8], rb: usize, bs: usize, acts: &[&[BlockQ8]]) -> usize {
    let nb = rb / bs;
    assert!(rb == nb * bs && w.len() >= ROWS * rb, "16 whole rows");
    assert!(acts.iter().all(|a| a.len() >= nb), "activations per row");
    nb
}

/// ggml's `hsum_float_8` of 8 lane accumulators, for 16 rows at once: lanes `k` and `k + 4`
/// first, then `(0 + 2) + (1 + 3)`.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn hsum8_lanes(a: &[__m512; 8]) -> __m512 {
    let r = [
        _mm512_add_ps(a[0], a[4]),
        _mm512_add_ps(a[1], a[5]),
        _mm512_add_ps(a[2], a[6]),
        _mm512_add_ps(a[3], a[7]),
    ];
    _mm512_add_ps(_mm512_add_ps(r[0], r[2]), _mm512_add_ps(r[1], r[3]))
}

/// 64 bytes at `p`.
///
/// # Safety
/// `p..p + 64` must be readable.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn load64(p: *const u8) -> __m512i {
    // SAFETY: the caller's promise; unaligned load (packed bodies are 64-aligned in practice).
    unsafe { _mm512_loadu_si512(p.cast()) }
}

/// Words `w..w + 4` of one block for the 16 rows, lane `r` holding row `r`'s word: from the
/// file's layout (block at `p` in row 0, rows `rb` apart) or from a packed block at `p`
/// (word `k` of the 16 rows at `p + 64k`).
///
/// # Safety
/// Those words of the 16 rows must be readable.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn words4<const PACKED: bool>(p: *const u8, rb: usize, w: usize) -> [__m512i; 4] {
    // SAFETY: the caller's promise, for either layout.
    unsafe {
        if PACKED {
            let q = p.add(64 * w);
            [
                load64(q),
                load64(q.add(64)),
                load64(q.add(128)),
                load64(q.add(192)),
            ]
        } else {
            load_t16(p.add(4 * w), rb)
        }
    }
}

/// Word `w` of one block for the 16 rows (lane `r`: row `r`'s), in either layout (see
/// [`words4`]).
///
/// # Safety
/// That word of the 16 rows must be readable.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn word<const PACKED: bool>(p: *const u8, rb: usize, w: usize) -> __m512i {
    // SAFETY: the caller's promise, for either layout.
    unsafe {
        if PACKED {
            load64(p.add(64 * w))
        } else {
            dwords16(p.add(4 * w), rb)
        }
    }
}

/// Where each block's body and head (its first `HEAD` bytes: f16 scale, then f16 min where
/// `HEAD` is 4) are for 16 rows, in the file's layout (block `i` of row 0 at `w + i * bs`, rows
/// `rb` apart; heads read a block ahead, as their 16 loads would otherwise stall the block's
/// first FMA) or packed ([`super::repack`]: every block's heads first, then the bodies).
pub(super) struct Blocks<'a, const PACKED: bool, const HEAD: usize> {
    w: &'a [u8],
    rb: usize,
    bs: usize,
    next: __m512i,
}

impl<'a, const PACKED: bool, const HEAD: usize> Blocks<'a, PACKED, HEAD> {
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) fn new(w: &'a [u8], rb: usize, bs: usize) -> Self {
        assert!(
            rb.is_multiple_of(bs) && w.len() >= ROWS * rb,
            "16 whole rows"
        );
        let next = if PACKED || HEAD == 0 {
            _mm512_setzero_si512()
        } else {
            block_dwords(w, rb, bs, 0)
        };
        Self { w, rb, bs, next }
    }

    /// Block `i`'s body address (row 0's, in the file's layout) and its heads as 16 dwords
    /// (zeros where `HEAD` is 0).
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(super) fn block(&mut self, i: usize) -> (*const u8, __m512i) {
        let (base, nb) = (self.w.as_ptr(), self.rb / self.bs);
        assert!(i < nb);
        if PACKED {
            let body = base.wrapping_add(ROWS * (HEAD * nb + (self.bs - HEAD) * i));
            // SAFETY: the group's heads are its first 16 * HEAD * nb bytes (`w` holds the
            // group: checked in `new`), and i < nb.
            let dm = unsafe {
                match HEAD {
                    0 => _mm512_setzero_si512(),
                    2 => _mm512_cvtepu16_epi32(_mm256_loadu_si256(base.add(32 * i).cast())),
                    _ => load64(base.add(64 * i)),
                }
            };
            (body, dm)
        } else {
            let dm = self.next;
            if HEAD > 0 {
                self.next = block_dwords(self.w, self.rb, self.bs, i + 1);
            }
            (base.wrapping_add(self.bs * i + HEAD), dm)
        }
    }
}

/// 16 f16 at `p` (the heads of one packed block), to floats.
///
/// # Safety
/// `p..p + 32` must be readable.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn heads_f16(p: *const u8) -> __m512 {
    // SAFETY: the caller's promise; unaligned load.
    _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(p.cast()) })
}

/// [`super::super::scalar::xor_lines`] with 512-bit loads, 4 lines a step, optionally
/// prefetching `ahead` bytes on (0: none).
#[target_feature(enable = "avx512f")]
pub(crate) fn xor_lines(buf: &[u8], ahead: usize) -> [u64; 8] {
    assert!(buf.len().is_multiple_of(256), "whole steps of 4 lines");
    let p = buf.as_ptr();
    let mut a = [_mm512_setzero_si512(); 4];
    for i in 0..buf.len() / 256 {
        let q = p.wrapping_add(256 * i);
        if ahead > 0 {
            for k in 0..4 {
                super::super::prefetch::weights(q.wrapping_add(ahead + 64 * k));
            }
        }
        for k in 0..4 {
            // SAFETY: bytes 256i .. 256i + 256 lie in `buf` (checked above).
            a[k] = _mm512_xor_si512(a[k], unsafe { load64(q.add(64 * k)) });
        }
    }
    let v = _mm512_xor_si512(_mm512_xor_si512(a[0], a[1]), _mm512_xor_si512(a[2], a[3]));
    let mut out = [0u64; 8];
    // SAFETY: `out` is 64 writable bytes; unaligned store.
    unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), v) };
    out
}
