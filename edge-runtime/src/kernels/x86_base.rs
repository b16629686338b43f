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

/// How far ahead of the rows being read the packed kernels prefetch. A packed group of 16
/// rows is one sequential stream, and so is a thread's run of groups (see `pool`): 8 KiB
/// ahead kept more of it in flight than one group ahead (18-73 KiB), measured on 2 threads
/// at 76-77 against 72-73 GB/s (Q4_K, 16384 x 2048, Zen 4).
const PACKED_AHEAD: usize = 8192;

/// Prefetches step `i`'s share (of `nb` steps) of the lines that follow the 16 rows at `w`:
/// for a packed group those [`PACKED_AHEAD`] bytes on (the group's own rest, then the next
/// groups), in the file's layout the next 16 rows (adjacent in the matrix, where there are
/// any), whose blocks the kernels read row-strided, which the hardware prefetcher does not
/// follow. Kernels with large blocks (K-quants) take several steps a block: a burst of 50
/// prefetches stalls the core on its miss buffers, which halved Q6_K decode from memory (18
/// against 37 GB/s on one thread, measured).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) fn prefetch_ahead<const PACKED: bool>(w: &[u8], rb: usize, i: usize, nb: usize) {
    let group = ROWS * rb;
    let next = w
        .as_ptr()
        .wrapping_add(if PACKED { PACKED_AHEAD } else { group });
    let lines = group.div_ceil(64);
    for l in i * lines / nb..(i + 1) * lines / nb {
        // A hint: it never faults, whatever the address.
        _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(64 * l).cast());
    }
}
