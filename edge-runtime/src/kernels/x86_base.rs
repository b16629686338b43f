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

/// Prefetches step `i`'s share (of `nb` steps) of the 16 rows after `w` (adjacent in the
/// matrix, where there are any) while these are read: rows are short and read 16 at a time,
/// which the hardware prefetcher does not follow. Kernels with large blocks (K-quants) take
/// several steps a block: a burst of 50 prefetches stalls the core on its miss buffers, which
/// halved Q6_K decode from memory (18 against 37 GB/s on one thread, measured).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn prefetch_next(w: &[u8], rb: usize, i: usize, nb: usize) {
    let next = w.as_ptr().wrapping_add(ROWS * rb);
    let lines = (ROWS * rb).div_ceil(64);
    for l in i * lines / nb..(i + 1) * lines / nb {
        // A hint: it never faults, whatever the address.
        _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(64 * l).cast());
    }
}
