//! The inference thread: owns the edge-runtime [`Session`] (its KV cache is reused across
//! turns, so a new message only prefills the new tokens), runs one generation at a time and
//! streams pieces back as [`Event::Worker`]s. Cancellation goes through a shared
//! [`CancelToken`], checked before every token.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use edge_runtime::{CancelToken, GenerateOptions, Model, SamplerConfig, Session, SessionOptions};

use crate::app::{Command, Event, WorkerEvent};
use crate::persona::Sampling;

pub struct Worker {
    pub commands: Sender<Command>,
    pub cancel: CancelToken,
    pub handle: JoinHandle<()>,
}

pub fn sampler(s: &Sampling, seed: u64) -> SamplerConfig {
    s.sampler(seed)
}

/// Why the inference thread could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Session(#[from] edge_runtime::Error),
    #[error("starting the inference thread: {0}")]
    Thread(std::io::Error),
}

/// Start the thread. `seed`: the sampler's seed for the first reply (then +1 per reply).
pub fn spawn(
    model: Arc<Model>,
    opts: SessionOptions,
    seed: u64,
    events: Sender<Event>,
) -> Result<Worker, WorkerError> {
    let mut session = Session::new(model, opts)?;
    let (tx, rx) = std::sync::mpsc::channel::<Command>();
    let cancel = CancelToken::new();
    let token = cancel.clone();
    let handle = std::thread::Builder::new()
        .name("edge-chat-inference".into())
        .spawn(move || run(&mut session, rx, token, seed, events))
        .map_err(WorkerError::Thread)?;
    Ok(Worker {
        commands: tx,
        cancel,
        handle,
    })
}

fn run(
    session: &mut Session,
    rx: Receiver<Command>,
    cancel: CancelToken,
    mut seed: u64,
    events: Sender<Event>,
) {
    let send = |e: WorkerEvent| events.send(Event::Worker(e)).is_ok();
    for cmd in rx {
        match cmd {
            Command::Reset => session.reset(),
            Command::Cancel => cancel.cancel(),
            Command::Generate { messages, sampling } => {
                cancel.reset();
                let opts = GenerateOptions {
                    max_tokens: sampling.max_tokens,
                    sampler: sampler(&sampling, seed),
                    stop: Vec::new(),
                    cancel: cancel.clone(),
                    ..Default::default()
                };
                seed = seed.wrapping_add(1);
                let mut g = match session.chat(&messages, opts) {
                    Ok(g) => g,
                    Err(e) => {
                        if !send(WorkerEvent::Error(e.to_string())) {
                            return;
                        }
                        continue;
                    }
                };
                let mut failed = None;
                for piece in g.by_ref() {
                    match piece {
                        Ok(p) => {
                            if !send(WorkerEvent::Piece(p.text)) {
                                return;
                            }
                        }
                        Err(e) => {
                            failed = Some(e.to_string());
                            break;
                        }
                    }
                }
                let done = WorkerEvent::Done {
                    tokens: g.stats().generated_tokens,
                    tokens_per_s: g.stats().tokens_per_second(),
                    ctx_used: 0,
                    reason: g.finish_reason(),
                };
                drop(g);
                let done = match (failed, done) {
                    (Some(e), _) => WorkerEvent::Error(e),
                    (
                        None,
                        WorkerEvent::Done {
                            tokens,
                            tokens_per_s,
                            reason,
                            ..
                        },
                    ) => WorkerEvent::Done {
                        tokens,
                        tokens_per_s,
                        ctx_used: session.tokens().len(),
                        reason,
                    },
                    (None, other) => other,
                };
                if !send(done) {
                    return;
                }
            }
        }
    }
}
