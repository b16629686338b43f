//! A persistent thread pool for the forward pass: workers live as long as the session, spin
//! briefly between jobs (a decode step runs hundreds of small parallel regions) and then sleep.
//! The calling thread is worker 0, so `n_threads = 1` means no extra threads at all.
//!
//! A job is a number of chunks. Each thread owns a contiguous run of them and takes its own
//! from the front, in order, so that a thread reads one sequential stretch of a weight matrix
//! and its prefetches of the next rows land in its own next chunk; a thread with none left
//! takes chunks from the back of another's run. Work so goes to the threads that are running:
//! when another process takes one of the cores, the descheduled worker's share is done by the
//! others instead of every parallel region waiting a scheduler time slice for it. Once the
//! caller has finished the last chunk the job is closed: a worker that wakes up later skips it,
//! and the caller waits only for the workers still inside a chunk.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::ahead::{Ahead, AheadLines};

/// `f(tid, chunk)`.
type Job = *const (dyn Fn(usize, usize) + Sync);

struct Shared {
    /// Bumped once per job; workers join the job when they see a new value.
    epoch: AtomicUsize,
    /// The last epoch whose job is closed (every chunk claimed and the caller done).
    closed: AtomicUsize,
    /// Threads inside a job.
    active: AtomicUsize,
    /// Per thread, the unclaimed chunks of its run: `front | back << 32`, claimed by the owner
    /// at the front and by the others at the back.
    runs: Box<[Run]>,
    job: UnsafeCell<Option<Job>>,
    /// Per thread, the lines of weights it reads next that are still to fetch (see
    /// [`ThreadPool::prefetch_after`]).
    ahead: Box<[Ahead]>,
    /// Workers reading `ahead` lines now (see [`ThreadPool::clear_ahead`]).
    touching: AtomicUsize,
    stop: AtomicBool,
    panicked: AtomicBool,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the owner thread between jobs, and read by a worker only
// after it has registered in `active` and seen the job open (see `worker`); the owner waits for
// `active` to drain before it returns or writes `job` again.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw job pointer is only dereferenced while `for_chunks` keeps it alive.
unsafe impl Send for Shared {}

/// One thread's run of chunks, on its own cache line (claims would otherwise contend).
#[repr(align(64))]
struct Run(AtomicU64);

impl Run {
    fn pack(r: std::ops::Range<usize>) -> u64 {
        r.start as u64 | (r.end as u64) << 32
    }

    /// The front chunk (`own`) or the back one, if any is left.
    fn claim(&self, own: bool) -> Option<usize> {
        let mut cur = self.0.load(Ordering::Relaxed);
        loop {
            let (front, back) = (cur & 0xffff_ffff, cur >> 32);
            if front >= back {
                return None;
            }
            let (next, c) = if own {
                (cur + 1, front)
            } else {
                (front | (back - 1) << 32, back - 1)
            };
            match self
                .0
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Some(c as usize),
                Err(v) => cur = v,
            }
        }
    }
}

pub struct ThreadPool {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
}

/// Spin iterations before a worker goes to sleep (~tens of microseconds).
const SPIN: usize = 20_000;

/// Chunks per thread in a job: enough that a slow thread's share can move to the others,
/// few enough that claiming costs nothing next to a chunk.
pub const CHUNKS_PER_THREAD: usize = 8;

impl ThreadPool {
    pub fn new(n_threads: usize) -> Self {
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            closed: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            runs: (0..n_threads.max(1))
                .map(|_| Run(AtomicU64::new(0)))
                .collect(),
            job: UnsafeCell::new(None),
            ahead: (0..n_threads.max(1)).map(|_| Ahead::default()).collect(),
            touching: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let handles = (1..n_threads.max(1))
            .map(|tid| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("edge-runtime-{tid}"))
                    .spawn(move || worker(&s, tid))
                    .expect("spawning a worker thread")
            })
            .collect();
        Self { shared, handles }
    }

    pub fn n_threads(&self) -> usize {
        self.handles.len() + 1
    }

    /// Says what each thread reads first in the next region of weights (up to
    /// [`AHEAD_BYTES`](super::ahead::AHEAD_BYTES) of it), to be fetched into its caches in time it would otherwise not
    /// read memory: while it waits at the end of a job (a worker until the next job starts,
    /// the caller until the last worker is done), and in compute-bound jobs that take the
    /// lines ([`take_ahead`](Self::take_ahead)). Decode is bound by reading the weights, and
    /// the serial steps between regions and attention otherwise leave a core's reads idle.
    /// A hint: it changes no result. It holds until replaced.
    ///
    /// # Safety
    /// Waiting threads read the lines with loads (prefetches, measured on a Zen 4 host, were
    /// mostly dropped when issued in a burst: 1 MiB read back at 55 GB/s after them, against
    /// 130 from L2 after loads). Every range `ahead` gives must stay readable until
    /// [`clear_ahead`](Self::clear_ahead) has returned or the pool is dropped.
    pub unsafe fn prefetch_after<'w>(&self, ahead: &dyn Fn(usize) -> &'w [u8]) {
        for (t, a) in self.shared.ahead.iter().enumerate() {
            a.set(ahead(t));
        }
    }

    /// Forgets the ranges given to [`prefetch_after`](Self::prefetch_after) and returns once no
    /// thread reads them any more.
    pub fn clear_ahead(&self) {
        let s = &*self.shared;
        for a in s.ahead.iter() {
            a.set(&[]);
        }
        // SeqCst against a worker's `touching` increment before it takes its lines: either
        // this sees it and waits, or the worker takes the empty range stored above.
        while s.touching.load(Ordering::SeqCst) > 0 {
            std::hint::spin_loop();
        }
    }

    /// Thread `tid`'s lines still to fetch, to be prefetched one at a time in a compute-bound
    /// job; give back what is left with [`keep_ahead`](Self::keep_ahead).
    pub fn take_ahead(&self, tid: usize) -> AheadLines {
        self.shared.ahead[tid].take()
    }

    /// Records how far `lines` got, unless they were replaced meanwhile.
    pub fn keep_ahead(&self, tid: usize, lines: &AheadLines) {
        self.shared.ahead[tid].keep(lines);
    }

    /// Runs `f(tid, c)` once for every chunk `c` in `0..chunks`, on the caller (`tid` 0) and the
    /// workers that join while chunks remain (`tid` in `1..n_threads`, each on one thread at a
    /// time, for per-thread scratch); returns when all are done.
    pub fn for_chunks(&self, chunks: usize, f: &(dyn Fn(usize, usize) + Sync)) {
        if self.handles.is_empty() || chunks <= 1 {
            for c in 0..chunks {
                f(0, c);
            }
            return;
        }
        let s = &*self.shared;
        // SAFETY: erasing the lifetime is sound because this function does not return before
        // every worker that registered for this job has left it (the `active` wait below), and
        // workers that register later see it closed and never touch the pointer.
        let job: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize, usize) + Sync), Job>(f) };
        // SAFETY: no worker reads `job` now: those of earlier jobs have left (`active` drained)
        // or will find their job closed.
        unsafe { *s.job.get() = Some(job) };
        let n = s.runs.len();
        for (t, run) in s.runs.iter().enumerate() {
            run.0
                .store(Run::pack(run_of(chunks, n, t)), Ordering::Relaxed);
        }
        // SeqCst pairs with the worker's `sleepers` increment (a store-load handshake), and
        // publishes the job and its runs.
        let epoch = s.epoch.fetch_add(1, Ordering::SeqCst).wrapping_add(1);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        let main = catch_unwind(AssertUnwindSafe(|| claim_chunks(s, f, 0)));
        // Every chunk is claimed: workers arriving from now on skip the job. SeqCst orders this
        // against each worker's `active` increment and its read of `closed`.
        s.closed.store(epoch, Ordering::SeqCst);
        let mut spins = 0u32;
        if s.active.load(Ordering::SeqCst) > 0 {
            let mut ahead = s.ahead[0].take();
            // SAFETY: `prefetch_after`'s caller keeps the lines readable until `clear_ahead`,
            // which this thread (the caller's) is not running.
            unsafe { ahead.load_while(&|| s.active.load(Ordering::Relaxed) > 0) };
            s.ahead[0].keep(&ahead);
        }
        while s.active.load(Ordering::SeqCst) > 0 {
            // Spin briefly (the common case: workers finish within microseconds), then yield so
            // an oversubscribed machine can run the worker we are waiting for.
            if spins < 2_000 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        if let Err(p) = main {
            std::panic::resume_unwind(p);
        }
        if s.panicked.swap(false, Ordering::AcqRel) {
            panic!("a worker thread panicked");
        }
    }

    /// Split `0..n` into contiguous ranges (a few per thread) and run `f(range)` on each.
    pub fn for_range(&self, n: usize, f: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
        let chunks = n.min(self.n_threads() * CHUNKS_PER_THREAD);
        self.for_chunks(chunks, &|_, c| f(split(n, chunks, c)));
    }
}

/// Claims and runs chunks of the current job until none remain: this thread's own run in
/// order, then the others' from their backs.
fn claim_chunks(s: &Shared, f: &(dyn Fn(usize, usize) + Sync), tid: usize) {
    while let Some(c) = s.runs[tid].claim(true) {
        f(tid, c);
    }
    let n = s.runs.len();
    for k in 1..n {
        let victim = &s.runs[(tid + k) % n];
        while let Some(c) = victim.claim(false) {
            f(tid, c);
        }
    }
}

/// The `tid`-th of `t` near-equal contiguous parts of `0..n`.
/// The chunks of `0..chunks` that thread `tid` of `n_threads` owns in
/// [`ThreadPool::for_chunks`] (and takes first, in order).
pub fn run_of(chunks: usize, n_threads: usize, tid: usize) -> std::ops::Range<usize> {
    split(chunks, n_threads, tid)
}

pub fn split(n: usize, t: usize, tid: usize) -> std::ops::Range<usize> {
    let base = n / t;
    let extra = n % t;
    let start = tid * base + tid.min(extra);
    start..start + base + usize::from(tid < extra)
}

fn worker(s: &Shared, tid: usize) {
    let mut seen = 0usize;
    loop {
        let mut spins = 0;
        loop {
            let e = s.epoch.load(Ordering::Acquire);
            if e != seen {
                seen = e;
                break;
            }
            if spins < SPIN {
                spins += 1;
                if spins % 1024 == 0 {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
                continue;
            }
            let g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            let g = s
                .wake
                .wait_while(g, |_| s.epoch.load(Ordering::SeqCst) == seen)
                .unwrap_or_else(|e| e.into_inner());
            s.sleepers.fetch_sub(1, Ordering::AcqRel);
            drop(g);
        }
        if s.stop.load(Ordering::Acquire) {
            return;
        }
        // Register first, then look: the caller closes the job before it waits for `active`
        // to drain, so either it sees this worker or this worker sees the job closed.
        s.active.fetch_add(1, Ordering::SeqCst);
        let open = (seen.wrapping_sub(s.closed.load(Ordering::SeqCst)) as isize) > 0;
        if open {
            // SAFETY: the epoch bump (Acquire above) published `job`, and the caller keeps the
            // closure alive until `active` drains.
            if let Some(job) = unsafe { *s.job.get() } {
                // SAFETY: see above: the pointee outlives this call.
                let f = unsafe { &*job };
                if catch_unwind(AssertUnwindSafe(|| claim_chunks(s, f, tid))).is_err() {
                    s.panicked.store(true, Ordering::Release);
                }
            }
        }
        s.active.fetch_sub(1, Ordering::Release);
        // Until the next job: this thread's lines of the weights that job reads first.
        s.touching.fetch_add(1, Ordering::SeqCst);
        let mut ahead = s.ahead[tid].take();
        // SAFETY: `prefetch_after`'s caller keeps the lines readable until `clear_ahead`
        // returns, which waits for `touching` to drop, or the pool is dropped, which bumps the
        // epoch and so ends this loop before it joins this thread.
        unsafe { ahead.load_while(&|| s.epoch.load(Ordering::Relaxed) == seen) };
        s.ahead[tid].keep(&ahead);
        s.touching.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.epoch.fetch_add(1, Ordering::Release);
        {
            let _g = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// A raw output pointer that threads write disjoint parts of.
#[derive(Clone, Copy)]
pub struct SyncPtr<T>(pub *mut T);
// SAFETY: users guarantee that concurrent writers touch disjoint elements (documented at each
// use), and the pool's `run` orders all writes before the caller reads.
unsafe impl<T> Sync for SyncPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Send for SyncPtr<T> {}

impl<T> SyncPtr<T> {
    /// Write `v` at index `i`.
    ///
    /// # Safety
    /// `i` must be in bounds of the buffer this pointer came from, and no other thread may
    /// access index `i` during the current parallel region.
    #[inline]
    pub unsafe fn write(self, i: usize, v: T) {
        // SAFETY: guaranteed by the caller.
        unsafe { self.0.add(i).write(v) }
    }

    /// A mutable slice `[start, start + len)`.
    ///
    /// # Safety
    /// The range must be in bounds and accessed by no other thread during the region.
    #[inline]
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chunk_runs_exactly_once() {
        for n in [1, 2, 3, 5] {
            let pool = ThreadPool::new(n);
            for chunks in [0, 1, 2, 7, 64] {
                let hits: Vec<AtomicUsize> = (0..chunks).map(|_| AtomicUsize::new(0)).collect();
                for _ in 0..300 {
                    pool.for_chunks(chunks, &|tid, c| {
                        assert!(tid < n);
                        hits[c].fetch_add(1, Ordering::Relaxed);
                    });
                }
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 300));
            }
        }
    }

    #[test]
    fn threads_take_their_own_run_in_order_then_steal_from_the_back() {
        let pool = ThreadPool::new(3);
        for _ in 0..200 {
            let taken: Vec<Mutex<Vec<usize>>> = (0..3).map(|_| Mutex::new(Vec::new())).collect();
            pool.for_chunks(24, &|tid, c| taken[tid].lock().unwrap().push(c));
            for (tid, seq) in taken.iter().enumerate() {
                let seq = seq.lock().unwrap();
                let own = split(24, 3, tid);
                let n_own = seq.iter().take_while(|c| own.contains(c)).count();
                // Its own chunks first, from the front of its run, in order.
                assert!(seq[..n_own]
                    .iter()
                    .copied()
                    .eq(own.start..own.start + n_own));
                // Then others', each run's from its back.
                for k in 1..3 {
                    let other = split(24, 3, (tid + k) % 3);
                    let stolen: Vec<usize> = seq[n_own..]
                        .iter()
                        .copied()
                        .filter(|c| other.contains(c))
                        .collect();
                    assert!(stolen.windows(2).all(|w| w[0] > w[1]), "{stolen:?}");
                }
            }
        }
    }

    #[test]
    fn a_stalled_threads_run_is_taken_by_the_others() {
        let pool = ThreadPool::new(2);
        let tids: Vec<AtomicUsize> = (0..2).map(|_| AtomicUsize::new(0)).collect();
        pool.for_chunks(16, &|tid, _| {
            tids[tid].fetch_add(1, Ordering::Relaxed);
            // Long enough for the worker to join; its one chunk stalls it.
            let ms = if tid == 1 { 40 } else { 1 };
            std::thread::sleep(std::time::Duration::from_millis(ms));
        });
        // Worker 1 holds one chunk at most; the caller does its own 8 and takes the rest.
        assert!(tids[1].load(Ordering::Relaxed) <= 1);
        assert_eq!(
            tids[0].load(Ordering::Relaxed) + tids[1].load(Ordering::Relaxed),
            16
        );
    }

    #[test]
    fn waiting_threads_read_their_lines_ahead_until_cleared() {
        let pool = ThreadPool::new(2);
        let buf = vec![1u8; 256 << 10];
        // SAFETY: `buf` outlives the pool's reads: `clear_ahead` below returns first.
        unsafe { pool.prefetch_after(&|tid| if tid == 1 { &buf[..] } else { &[] }) };
        // Whole lines: one fewer where the buffer does not start on a line.
        assert!(pool.take_ahead(1).left() >= (256 << 10) / 64 - 1);
        // The worker joins the job, then reads its lines while it waits for the next one.
        pool.for_chunks(64, &|_, _| {
            std::thread::sleep(std::time::Duration::from_micros(50))
        });
        let t = std::time::Instant::now();
        while pool.take_ahead(1).left() > 0 && t.elapsed().as_secs() < 5 {
            std::thread::yield_now();
        }
        assert_eq!(
            pool.take_ahead(1).left(),
            0,
            "the waiting worker read its lines"
        );
        assert_eq!(pool.take_ahead(0).left(), 0);
        // SAFETY: as above.
        unsafe { pool.prefetch_after(&|_| &buf[..]) };
        pool.clear_ahead();
        assert!((0..2).all(|t| pool.take_ahead(t).left() == 0));
        assert_eq!(pool.shared.touching.load(Ordering::SeqCst), 0);
        drop(buf);
    }

    #[test]
    fn ranges_cover_exactly_once() {
        for n in [0, 1, 7, 100, 101] {
            for t in 1..6 {
                let mut seen = vec![0; n];
                for tid in 0..t {
                    for i in split(n, t, tid) {
                        seen[i] += 1;
                    }
                }
                assert!(seen.iter().all(|&c| c == 1), "n={n} t={t}");
            }
        }
    }

    #[test]
    fn pool_sleeps_and_wakes() {
        let pool = ThreadPool::new(2);
        let hits = AtomicUsize::new(0);
        pool.for_chunks(2, &|_, _| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        std::thread::sleep(std::time::Duration::from_millis(50)); // workers park
        let tids: Vec<AtomicUsize> = (0..2).map(|_| AtomicUsize::new(0)).collect();
        pool.for_chunks(64, &|tid, _| {
            hits.fetch_add(1, Ordering::Relaxed);
            tids[tid].fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(std::time::Duration::from_micros(200));
        });
        assert_eq!(hits.load(Ordering::Relaxed), 66);
        assert!(
            tids[1].load(Ordering::Relaxed) > 0,
            "the woken worker took chunks"
        );
    }

    #[test]
    fn worker_panic_is_reported() {
        let pool = ThreadPool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.for_chunks(64, &|tid, _| {
                std::thread::sleep(std::time::Duration::from_micros(100));
                assert!(tid == 0, "boom")
            })
        }));
        assert!(r.is_err());
        // The pool is still usable afterwards.
        let hits = AtomicUsize::new(0);
        pool.for_chunks(2, &|_, _| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 2);
    }
}
