//! Bounded waiting in collectives. A rank blocked in a collective because a peer died or hangs
//! would wait forever on most engines (NCCL always; MPI when the peer is stopped rather than
//! killed). A background thread watches the time spent in the current call and, past the
//! timeout, prints which call on which rank was waiting and exits the process with
//! [`EXIT_CODE`]; the launcher (mpirun, srun, torchrun) then tears the job down.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The exit status of a rank that gave up waiting (EX_TEMPFAIL: the job may be restarted
/// from its last checkpoint).
pub const EXIT_CODE: i32 = 75;

struct Shared {
    epoch: Instant,
    /// Milliseconds since `epoch` at which the current call began, plus 1; 0 when idle.
    since_ms: AtomicU64,
    op: Mutex<&'static str>,
    calls: AtomicU64,
    /// The timeout's multiplier (see `Collective::set_patience`).
    patience: AtomicU64,
}

/// Watches collective calls; see the module doc.
pub struct Watchdog {
    shared: Arc<Shared>,
}

/// Marks a call in progress until dropped.
pub struct Entered<'a> {
    dog: &'a Watchdog,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.dog.shared.since_ms.store(0, Ordering::Release);
    }
}

impl Watchdog {
    /// Start the watching thread (it lives as long as the process).
    pub fn start(rank: usize, world: usize, engine: &'static str, timeout: Duration) -> Self {
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            since_ms: AtomicU64::new(0),
            op: Mutex::new(""),
            calls: AtomicU64::new(0),
            patience: AtomicU64::new(1),
        });
        let watched = Arc::clone(&shared);
        let tick = (timeout / 20).clamp(Duration::from_millis(20), Duration::from_secs(1));
        let spawned = std::thread::Builder::new()
            .name("collective-watchdog".into())
            .spawn(move || loop {
                std::thread::sleep(tick);
                let since = watched.since_ms.load(Ordering::Acquire);
                if since == 0 {
                    continue;
                }
                let now = watched.epoch.elapsed().as_millis() as u64 + 1;
                let waited = Duration::from_millis(now.saturating_sub(since));
                let limit = timeout * watched.patience.load(Ordering::Relaxed).max(1) as u32;
                if waited >= limit {
                    let op = *watched.op.lock().unwrap_or_else(|e| e.into_inner());
                    eprintln!(
                        "cloud-train: rank {rank} of {world} waited {:.1} s in {engine} {op} (collective call {}) for the other ranks: one of them died or hangs; exiting with status {EXIT_CODE} (collective_timeout_s = {}, x{} while a checkpoint is written). Resume from the last checkpoint.",
                        waited.as_secs_f64(),
                        watched.calls.load(Ordering::Relaxed),
                        timeout.as_secs_f64(),
                        watched.patience.load(Ordering::Relaxed)
                    );
                    std::process::exit(EXIT_CODE);
                }
            });
        if let Err(e) = spawned {
            eprintln!("cloud-train: rank {rank}: no collective watchdog ({e}): a dead peer may hang this rank");
        }
        Self { shared }
    }

    /// Multiply the timeout by `factor` (1 restores it).
    pub fn set_patience(&self, factor: u32) {
        self.shared
            .patience
            .store(u64::from(factor.max(1)), Ordering::Relaxed);
    }

    /// Mark the start of a collective call; the returned guard marks its end.
    pub fn enter(&self, op: &'static str) -> Entered<'_> {
        *self.shared.op.lock().unwrap_or_else(|e| e.into_inner()) = op;
        self.shared.calls.fetch_add(1, Ordering::Relaxed);
        let now = self.shared.epoch.elapsed().as_millis() as u64 + 1;
        self.shared.since_ms.store(now, Ordering::Release);
        Entered { dog: self }
    }
}
