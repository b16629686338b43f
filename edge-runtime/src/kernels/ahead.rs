//! What a thread reads next: the first lines of its share of the next weight matrix, fetched
//! into its caches while it would otherwise not read memory (see
//! [`ThreadPool::prefetch_after`](super::pool::ThreadPool::prefetch_after)).

use std::sync::atomic::{AtomicU64, Ordering};

/// The most a thread fetches ahead of the next region: about what it can read while the
/// serial steps between regions and attention keep it from reading (tens of microseconds at
/// ~40 GB/s), within its L2 and the L3 behind it.
pub const AHEAD_BYTES: usize = 1 << 20;

/// Lines loaded between two looks at whether a wait is over.
const STEP: usize = 64;

/// Bits of an [`Ahead`] word that count the lines left; the first line's address / 64 is
/// above them.
const LEFT_BITS: u32 = 22;

/// One thread's lines still to fetch, in one word so that the pool's owner can replace them
/// while the thread takes some.
#[repr(align(64))]
#[derive(Default)]
pub(super) struct Ahead(AtomicU64);

impl Ahead {
    /// The whole lines of `r`, at most [`AHEAD_BYTES`] of them.
    pub(super) fn set(&self, r: &[u8]) {
        let start = r.as_ptr() as usize;
        let first = start.next_multiple_of(64);
        let lines = AheadLines {
            addr: first,
            left: (r.len().saturating_sub(first - start)).min(AHEAD_BYTES) / 64,
            taken: 0,
        };
        self.0.store(lines.word(), Ordering::Relaxed);
    }

    pub(super) fn take(&self) -> AheadLines {
        let w = self.0.load(Ordering::Relaxed);
        AheadLines {
            addr: ((w >> LEFT_BITS) << 6) as usize,
            left: (w & ((1 << LEFT_BITS) - 1)) as usize,
            taken: w,
        }
    }

    /// Stores how far `lines` got, unless they were replaced since they were taken.
    pub(super) fn keep(&self, lines: &AheadLines) {
        let _ = self.0.compare_exchange(
            lines.taken,
            lines.word(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
}

/// A thread's lines to fetch, taken from the pool.
pub struct AheadLines {
    addr: usize,
    left: usize,
    taken: u64,
}

impl AheadLines {
    /// No lines.
    pub fn none() -> Self {
        Self {
            addr: 0,
            left: 0,
            taken: 0,
        }
    }

    fn word(&self) -> u64 {
        ((self.addr as u64 >> 6) << LEFT_BITS) | self.left as u64
    }

    pub fn left(&self) -> usize {
        self.left
    }

    /// Prefetches the next line, if any is left: one at a time, between steps of a
    /// compute-bound loop (a burst of prefetches is mostly dropped, see `load_while`).
    #[inline(always)]
    pub fn one(&mut self) {
        if self.left > 0 {
            super::prefetch::weights(self.addr as *const u8);
            self.addr += 64;
            self.left -= 1;
        }
    }

    /// Loads the lines left, [`STEP`] at a time, while `waiting()`. Loads, not prefetches: on
    /// a Zen 4 host 1 MiB prefetched in a burst read back at 55 GB/s (most prefetches were
    /// dropped), after loads at 130 GB/s (from L2).
    ///
    /// # Safety
    /// The lines must be readable (see `ThreadPool::prefetch_after`).
    pub(super) unsafe fn load_while(&mut self, waiting: &dyn Fn() -> bool) {
        while self.left > 0 && waiting() {
            let n = self.left.min(STEP);
            for l in 0..n {
                // SAFETY: readable, as the caller promised; a volatile read is never elided.
                unsafe { std::ptr::read_volatile((self.addr + 64 * l) as *const u8) };
            }
            self.addr += 64 * n;
            self.left -= n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_gives_its_whole_lines_at_most_ahead_bytes() {
        let buf = vec![0u8; 4096 + AHEAD_BYTES];
        let base = buf.as_ptr() as usize;
        let a = Ahead::default();
        // From byte 1: the first whole line starts at the next multiple of 64.
        let start = (base + 1).next_multiple_of(64) - base;
        a.set(&buf[1..start + 200]);
        let l = a.take();
        assert_eq!((l.addr, l.left), (base + start, 3));
        a.set(&buf);
        assert_eq!(a.take().left, AHEAD_BYTES / 64);
        a.set(&[]);
        assert_eq!(a.take().left, 0);
    }

    #[test]
    fn progress_is_kept_unless_the_lines_were_replaced() {
        let (x, y) = (vec![0u8; 64 * 64], vec![0u8; 64 * 64]);
        let a = Ahead::default();
        a.set(&x);
        let mut l = a.take();
        let n = l.left;
        l.one();
        l.one();
        a.keep(&l);
        assert_eq!(a.take().left, n - 2);
        let mut stale = a.take();
        a.set(&y);
        stale.one();
        a.keep(&stale);
        let now = a.take();
        assert_eq!(now.addr, (y.as_ptr() as usize).next_multiple_of(64));
        assert!(now.left >= n - 1);
    }
}
