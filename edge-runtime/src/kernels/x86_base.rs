//! AVX2 helpers shared by the x86 kernels.

use std::arch::x86_64::*;

use super::ROWS16 as ROWS;

#[inline(always)]
pub(super) fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// ggml's `hsum_float_8`.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn hsum_float_8(x: __m256) -> f32 {
    let mut r = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    _mm_cvtss_f32(r)
}

/// How far ahead of the weights being read the packed kernels prefetch. A packed group of 16
/// rows is one sequential stream, and so is a thread's run of groups (see `pool`); the
/// distance is counted past the group's block heads, in front of the bodies. Measured on a
/// Zen 4 host, one thread, from memory, GB/s at 4 / 8 / 16 KiB ahead, 2048 columns: Q4_0
/// 36 / 38 / 36, Q4_K 38 / 42 / 38, Q6_K 33 / 39 / 41, Q8_0 38 / 40 / 36; one group ahead
/// (the file layout's choice, 18-73 KiB) read Q4_K at 32-35.
/// Into L1 there; on an Intel Xeon into L2 (`prefetch`), where 8 and 16 KiB did equally well.
const PACKED_AHEAD: usize = 8192;

/// Spreads prefetches of the lines that follow the 16 rows at `w` over a kernel's steps
/// (`heads` bytes of block heads first, where the layout is packed): for a packed group those
/// [`PACKED_AHEAD`] bytes past the bodies being read (the group's own rest, then the next
/// groups), in the file's layout the next 16 rows (adjacent in the matrix, where there are
/// any), whose blocks the kernels read row-strided, which the hardware prefetcher does not
/// follow. Kernels with large blocks (K-quants) take several steps a block: a burst of 50
/// prefetches stalls the core on its miss buffers, which halved Q6_K decode from memory (18
/// against 37 GB/s on one thread, measured). Each step's share comes from a running sum in
/// 32.32 fixed point, not two integer divisions a step, which are slow on Intel cores (with
/// the divisions, one Xeon thread read Q8_0 from cache at 31-32 against 34.5-36 GB/s).
pub(super) struct PrefetchAhead {
    next: *const u8,
    lines: u64,
    /// Lines done and lines a step, in 32.32 fixed point.
    at: u64,
    per_step: u64,
}

impl PrefetchAhead {
    /// For a kernel of `steps` steps over the 16 rows at `w` (`rb` bytes a row).
    #[inline(always)]
    pub(super) fn new<const PACKED: bool>(w: &[u8], rb: usize, heads: usize, steps: usize) -> Self {
        let group = ROWS * rb;
        let lines = group.div_ceil(64) as u64;
        Self {
            next: w
                .as_ptr()
                .wrapping_add(if PACKED { heads + PACKED_AHEAD } else { group }),
            lines,
            at: 0,
            per_step: (lines << 32).div_ceil(steps.max(1) as u64),
        }
    }

    /// Prefetches the next step's share of the lines (steps are taken in order).
    #[inline(always)]
    pub(super) fn step(&mut self) {
        let from = self.at >> 32;
        self.at += self.per_step;
        for l in from..(self.at >> 32).min(self.lines) {
            super::prefetch::weights(self.next.wrapping_add(64 * l as usize));
        }
    }
}

/// [`super::scalar::xor_lines`] with 256-bit loads, 4 lines a step, optionally prefetching
/// `ahead` bytes on (0: none).
#[target_feature(enable = "avx2")]
pub(super) fn xor_lines_avx2(buf: &[u8], ahead: usize) -> [u64; 8] {
    assert!(buf.len().is_multiple_of(256), "whole steps of 4 lines");
    let p = buf.as_ptr();
    let mut a = [_mm256_setzero_si256(); 2];
    for i in 0..buf.len() / 256 {
        let q = p.wrapping_add(256 * i);
        if ahead > 0 {
            for k in 0..4 {
                super::prefetch::weights(q.wrapping_add(ahead + 64 * k));
            }
        }
        for k in 0..8 {
            // SAFETY: bytes 256i .. 256i + 256 lie in `buf` (checked above); unaligned load.
            let v = unsafe { _mm256_loadu_si256(q.add(32 * k).cast()) };
            a[k % 2] = _mm256_xor_si256(a[k % 2], v);
        }
    }
    let mut out = [0u64; 8];
    // SAFETY: 8 u64 of `out` hold the two 256-bit vectors; unaligned stores.
    unsafe {
        _mm256_storeu_si256(out.as_mut_ptr().cast(), a[0]);
        _mm256_storeu_si256(out.as_mut_ptr().add(4).cast(), a[1]);
    }
    out
}
