//! The decode step allocates nothing: a counting global allocator sees zero allocations on the
//! calling thread (which runs its share of every parallel region, the same code as the pool's
//! workers) while a warmed-up session samples and evaluates tokens one by one. Allocations of
//! the test harness's own threads are not counted.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;
static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);
thread_local! { static IS_TEST_THREAD: Cell<bool> = const { Cell::new(false) }; }

fn count() {
    if COUNTING.load(Ordering::Relaxed) && IS_TEST_THREAD.with(Cell::get) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn decode_steps_do_not_allocate() {
    let model = common::smollm2();
    let mut s = edge_runtime::Session::new(
        model,
        edge_runtime::SessionOptions {
            n_ctx: 256,
            n_threads: 2,
            n_batch: 32,
        },
    )
    .expect("session");
    s.eval(&[1, 9690, 198]).expect("warm-up");
    s.eval(&[504]).expect("warm-up step");
    let mut sampler = edge_runtime::Sampler::new(edge_runtime::SamplerConfig::default());
    let _ = sampler.sample(s.logits(), &[]);
    IS_TEST_THREAD.with(|t| t.set(true));
    COUNTING.store(true, Ordering::SeqCst);
    for _ in 0..20 {
        let tok = sampler.sample(s.logits(), &[1, 9690]);
        s.eval(&[tok]).expect("decode step");
    }
    COUNTING.store(false, Ordering::SeqCst);
    assert_eq!(
        ALLOCS.load(Ordering::SeqCst),
        0,
        "allocations during 20 decode steps"
    );
}
