//! Allocator tuning for training on the CPU.
//!
//! A training step allocates and frees the same large activation tensors every step. glibc
//! serves blocks over its mmap threshold (at most 32 MiB) with fresh `mmap`s and trims freed
//! heap memory, so every step page-faults and zeroes its buffers again: ~15% of a step on the
//! 20M-parameter bench (scripts/bench-train-vs-torch.py). Keeping freed memory in the heap
//! costs nothing the step's own peak has not already used.

/// Serve large blocks from the heap and keep freed memory (glibc only; elsewhere a no-op).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const GIB: libc::c_int = 1 << 30;
        // SAFETY: mallopt only changes glibc's allocation thresholds; it is called once at
        // start-up, before this program's threads exist.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, GIB);
            libc::mallopt(libc::M_TRIM_THRESHOLD, GIB);
        }
    }
}
