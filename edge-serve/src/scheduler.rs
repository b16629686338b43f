//! The decode thread: owns the [`BatchDecoder`], admits queued requests into free slots between
//! steps, runs one batched step at a time and sends each request's text to its handler. A
//! request whose handler has gone (the client disconnected) is cancelled before the next step.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc::UnboundedSender;

use edge_runtime::{BatchDecoder, BatchEvent, FinishReason, GenerateOptions, RequestId};

use crate::metrics::Metrics;

/// A tokenized request waiting for a slot.
pub struct Job {
    pub prompt: Vec<u32>,
    pub opts: GenerateOptions,
    pub events: UnboundedSender<JobEvent>,
}

/// What the decode thread tells a request's handler.
#[derive(Debug)]
pub enum JobEvent {
    Text(String),
    Done {
        reason: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
        cached_tokens: usize,
    },
    Failed(String),
}

/// The bounded queue in front of the slots.
#[derive(Clone)]
pub struct Queue {
    tx: SyncSender<Job>,
    metrics: Arc<Metrics>,
}

impl Queue {
    /// Queue `job`; false when the queue is full (or the decode thread is gone).
    pub fn try_push(&self, job: Job) -> bool {
        self.metrics.queue_depth.fetch_add(1, Ordering::SeqCst);
        match self.tx.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.metrics.queue_depth.fetch_sub(1, Ordering::SeqCst);
                false
            }
        }
    }
}

/// A queue holding up to `capacity` waiting requests, and its receiving end for [`run`].
pub fn queue(capacity: usize, metrics: Arc<Metrics>) -> (Queue, Receiver<Job>) {
    let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
    (Queue { tx, metrics }, rx)
}

struct Running {
    events: UnboundedSender<JobEvent>,
    prompt_tokens: usize,
}

/// The decode loop; returns when every [`Queue`] handle is dropped and no request is running.
pub fn run(mut decoder: BatchDecoder, jobs: Receiver<Job>, metrics: Arc<Metrics>) {
    let mut running: HashMap<RequestId, Running> = HashMap::new();
    let mut events = Vec::new();
    metrics
        .slots
        .store(decoder.options().n_slots as u64, Ordering::Relaxed);
    let mut rate = 0.0f64;
    loop {
        // 1. Admit waiting requests into free slots; sleep on the queue when idle.
        while decoder.has_free_slot() {
            let job = if running.is_empty() {
                match jobs.recv() {
                    Ok(j) => j,
                    Err(_) => return,
                }
            } else {
                match jobs.try_recv() {
                    Ok(j) => j,
                    Err(_) => break,
                }
            };
            metrics.queue_depth.fetch_sub(1, Ordering::SeqCst);
            if job.events.is_closed() {
                metrics.cancelled.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let prompt_tokens = job.prompt.len();
            match decoder.submit(&job.prompt, job.opts) {
                Ok(id) => {
                    running.insert(
                        id,
                        Running {
                            events: job.events,
                            prompt_tokens,
                        },
                    );
                }
                Err(e) => {
                    let _ = job.events.send(JobEvent::Failed(e.to_string()));
                }
            }
        }
        // 2. Clients that went away.
        for (&id, r) in &running {
            if r.events.is_closed() {
                decoder.cancel(id);
            }
        }
        metrics
            .active
            .store(running.len() as u64, Ordering::Relaxed);

        // 3. One step, then route what it produced.
        let t0 = Instant::now();
        events.clear();
        let sampled = decoder.step(&mut events);
        let mut generated = 0u64;
        for e in events.drain(..) {
            match e {
                BatchEvent::Text { id, text } => {
                    if let Some(r) = running.get(&id) {
                        let _ = r.events.send(JobEvent::Text(text));
                    }
                }
                BatchEvent::Done {
                    id,
                    reason,
                    tokens,
                    stats,
                } => {
                    let Some(r) = running.remove(&id) else {
                        continue;
                    };
                    generated += tokens.len() as u64;
                    metrics
                        .prompt_tokens
                        .fetch_add(r.prompt_tokens as u64, Ordering::Relaxed);
                    metrics
                        .cached_prompt_tokens
                        .fetch_add(stats.reused_tokens as u64, Ordering::Relaxed);
                    let counter = if reason == FinishReason::Cancelled {
                        &metrics.cancelled
                    } else {
                        &metrics.completed
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    let _ = r.events.send(JobEvent::Done {
                        reason,
                        prompt_tokens: r.prompt_tokens,
                        completion_tokens: tokens.len(),
                        cached_tokens: stats.reused_tokens,
                    });
                }
            }
        }
        // Tokens per second over the steps that sampled any, smoothed.
        let dt = t0.elapsed().as_secs_f64();
        if dt > 0.0 && sampled > 0 {
            rate = 0.8 * rate + 0.2 * (sampled as f64 / dt);
            metrics.set_tokens_per_second(rate);
        }
        metrics
            .generated_tokens
            .fetch_add(generated, Ordering::Relaxed);
        metrics
            .active
            .store(running.len() as u64, Ordering::Relaxed);
    }
}
