//! A persistent thread pool for the forward pass: workers live as long as the session, spin
//! briefly between jobs (a decode step runs hundreds of small parallel regions) and then sleep.
//! The calling thread is worker 0, so `n_threads = 1` means no extra threads at all.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// Bumped once per job; workers run the job when they see a new value.
    epoch: AtomicUsize,
    /// Workers that finished the current job.
    done: AtomicUsize,
    job: UnsafeCell<Option<Job>>,
    stop: AtomicBool,
    panicked: AtomicBool,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the owner thread while no job is running (all workers have
// reported `done`), and read by workers only after observing the epoch bump that publishes it.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw job pointer is only dereferenced while `run` keeps it alive.
unsafe impl Send for Shared {}

pub struct ThreadPool {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
}

/// Spin iterations before a worker goes to sleep (~tens of microseconds).
const SPIN: usize = 20_000;

impl ThreadPool {
    pub fn new(n_threads: usize) -> Self {
        let shared = Arc::new(Shared {
            epoch: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
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

    /// Run `f(tid)` on every thread (`tid` in `0..n_threads`), the caller being thread 0;
    /// returns when all are done.
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        if self.handles.is_empty() {
            f(0);
            return;
        }
        let s = &*self.shared;
        // SAFETY: erasing the lifetime is sound because this function does not return before
        // every worker has finished calling `f` (the `done` wait below), and workers never
        // touch the pointer after reporting done.
        let job: Job = unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(f) };
        // SAFETY: no job is running (the previous `run` waited for all workers), so no worker
        // reads `job` now.
        unsafe { *s.job.get() = Some(job) };
        s.done.store(0, Ordering::Relaxed);
        // SeqCst pairs with the worker's `sleepers` increment (a store-load handshake).
        s.epoch.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        let main = catch_unwind(AssertUnwindSafe(|| f(0)));
        let n = self.handles.len();
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) < n {
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

    /// Split `0..n` into one contiguous range per thread and run `f(range)` on each.
    pub fn for_range(&self, n: usize, f: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
        let t = self.n_threads();
        self.run(&|tid| {
            let r = split(n, t, tid);
            if !r.is_empty() {
                f(r);
            }
        });
    }
}

/// The `tid`-th of `t` near-equal contiguous parts of `0..n`.
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
        // SAFETY: the epoch bump (Acquire above) published `job`, and `run` keeps the closure
        // alive until this worker increments `done`.
        let job = unsafe { *s.job.get() };
        if let Some(job) = job {
            // SAFETY: see above: the pointee outlives this call.
            let f = unsafe { &*job };
            if catch_unwind(AssertUnwindSafe(|| f(tid))).is_err() {
                s.panicked.store(true, Ordering::Release);
            }
        }
        s.done.fetch_add(1, Ordering::AcqRel);
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
    fn every_thread_runs_every_job() {
        for n in [1, 2, 3, 5] {
            let pool = ThreadPool::new(n);
            let hits = AtomicUsize::new(0);
            for _ in 0..1000 {
                pool.run(&|_| {
                    hits.fetch_add(1, Ordering::Relaxed);
                });
            }
            assert_eq!(hits.load(Ordering::Relaxed), 1000 * n);
        }
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
        pool.run(&|_| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        std::thread::sleep(std::time::Duration::from_millis(50)); // workers park
        pool.run(&|_| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn worker_panic_is_reported() {
        let pool = ThreadPool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(&|tid| assert!(tid == 0, "boom"))
        }));
        assert!(r.is_err());
        // The pool is still usable afterwards.
        let hits = AtomicUsize::new(0);
        pool.run(&|_| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 2);
    }
}
