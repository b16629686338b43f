//! edge-serve: an OpenAI-compatible HTTP server for a Llama GGUF model on the CPU.
//!
//! `POST /v1/chat/completions` and `POST /v1/completions` (whole replies or server-sent
//! events), `GET /v1/models`, `GET /health` and `GET /metrics` (Prometheus). Requests wait in a
//! bounded queue (503 with `Retry-After` when it is full) for one of `parallel` slots; the
//! slots decode together, one pass over the weights per step ([`edge_runtime::BatchDecoder`]),
//! so several chats cost little more than one. A client that disconnects cancels its
//! generation before the next step.
//!
//! ```no_run
//! use std::sync::Arc;
//! use edge_runtime::{LoadOptions, Model};
//! use edge_serve::{Server, ServerConfig};
//!
//! let model = Arc::new(Model::load("assets/SmolLM2-135M-Instruct.Q4_1.gguf", LoadOptions::default())?);
//! let server = Server::start(model, ServerConfig::default())?;
//! println!("listening on http://{}", server.addr());
//! server.wait()?;
//! # Ok::<(), edge_serve::ServeError>(())
//! ```

pub mod api;
mod error;
mod metrics;
mod routes;
mod scheduler;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread::JoinHandle;

use edge_runtime::persona::Persona;
use edge_runtime::{BatchDecoder, BatchOptions, Model};

pub use error::{ApiError, ServeError};

/// How to serve: address, slots, queue, limits.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen; localhost by default (use 0.0.0.0 deliberately).
    pub addr: SocketAddr,
    /// Requests decoded together.
    pub parallel: usize,
    /// Context of each slot (prompt and reply), in tokens.
    pub n_ctx: usize,
    pub n_threads: usize,
    /// Tokens evaluated per step, all slots together.
    pub n_batch: usize,
    /// Requests that may wait for a slot before new ones get 503.
    pub queue: usize,
    /// System prompt and sampling defaults, as edge-chat applies them.
    pub persona: Option<Persona>,
    /// Required as `Authorization: Bearer KEY` on the API routes when set.
    pub api_key: Option<String>,
    pub max_body_bytes: usize,
    /// The id `/v1/models` reports (the model file's name without `.gguf` by default).
    pub model_id: Option<String>,
    /// Stop gracefully on Ctrl-C (for the command line; tests leave it off).
    pub stop_on_ctrl_c: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            parallel: 4,
            n_ctx: 4096,
            n_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            n_batch: 256,
            queue: 64,
            persona: None,
            api_key: None,
            max_body_bytes: 4 << 20,
            model_id: None,
            stop_on_ctrl_c: false,
        }
    }
}

/// A running server: the HTTP side on a tokio runtime, decoding on its own thread.
pub struct Server {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    http: Option<JoinHandle<Result<(), ServeError>>>,
    decode: Option<JoinHandle<()>>,
}

impl Server {
    /// Bind, start the decode thread and the HTTP runtime, and return once listening.
    pub fn start(model: Arc<Model>, config: ServerConfig) -> Result<Self, ServeError> {
        let decoder = BatchDecoder::new(
            model.clone(),
            BatchOptions {
                n_slots: config.parallel,
                n_ctx: config.n_ctx,
                n_threads: config.n_threads,
                n_batch: config.n_batch,
            },
        )?;
        let n_ctx = decoder.options().n_ctx;
        let metrics = Arc::new(metrics::Metrics::default());
        let (queue, jobs) = scheduler::queue(config.queue, metrics.clone());
        let decode = {
            let metrics = metrics.clone();
            std::thread::Builder::new()
                .name("edge-serve-decode".into())
                .spawn(move || scheduler::run(decoder, jobs, metrics))
                .map_err(ServeError::Runtime)?
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(ServeError::Runtime)?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(config.addr))
            .map_err(|source| ServeError::Bind {
                addr: config.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(ServeError::Runtime)?;
        let state = Arc::new(routes::AppState {
            model_id: config.model_id.clone().unwrap_or_else(|| {
                let p = model.path();
                p.file_stem()
                    .unwrap_or(p.as_os_str())
                    .to_string_lossy()
                    .into_owned()
            }),
            model,
            queue,
            metrics,
            persona: config.persona.clone(),
            api_key: config.api_key.clone(),
            n_ctx,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            next_id: AtomicU64::new(0),
        });
        let app = routes::router(state, config.max_body_bytes);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let ctrl_c = config.stop_on_ctrl_c;
        let http = std::thread::Builder::new()
            .name("edge-serve-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let stop = async move {
                        if ctrl_c {
                            tokio::select! {
                                _ = rx => {}
                                _ = tokio::signal::ctrl_c() => {}
                            }
                        } else {
                            let _ = rx.await;
                        }
                    };
                    axum::serve(listener, app)
                        .with_graceful_shutdown(stop)
                        .await
                        .map_err(|e| ServeError::Stopped(e.to_string()))
                })
            })
            .map_err(ServeError::Runtime)?;
        Ok(Self {
            addr,
            shutdown: Some(tx),
            http: Some(http),
            decode: Some(decode),
        })
    }

    /// The address it listens on (the real port when the config asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Block until the server stops (Ctrl-C with `stop_on_ctrl_c`, or [`shutdown`](Self::shutdown)
    /// from elsewhere).
    pub fn wait(mut self) -> Result<(), ServeError> {
        self.join()
    }

    /// Stop accepting, let running responses finish, and wait for the threads.
    pub fn shutdown(mut self) -> Result<(), ServeError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.join()
    }

    fn join(&mut self) -> Result<(), ServeError> {
        let mut result = Ok(());
        if let Some(h) = self.http.take() {
            result = h
                .join()
                .map_err(|_| ServeError::Stopped("the HTTP thread panicked".into()))
                .and_then(|r| r);
        }
        // The router (and its queue handle) is gone, so the decode thread ends once idle.
        if let Some(h) = self.decode.take() {
            let _ = h.join();
        }
        result
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.join();
    }
}
