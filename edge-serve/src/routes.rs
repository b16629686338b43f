//! The HTTP routes: OpenAI's chat and text completions (whole or streamed as server-sent
//! events), models, health and metrics; API-key checking and response counting.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use edge_runtime::persona::Persona;
use edge_runtime::{GenerateOptions, Message, Model, SamplerConfig};

use crate::api::{self, ChatMessage, ChatRequest, CompletionRequest, Content, Endpoint, Header};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::scheduler::{Job, JobEvent, Queue};

pub struct AppState {
    pub model: Arc<Model>,
    pub model_id: String,
    pub queue: Queue,
    pub metrics: Arc<Metrics>,
    pub persona: Option<Persona>,
    pub api_key: Option<String>,
    /// Context of one slot: prompt and reply together.
    pub n_ctx: usize,
    pub created: u64,
    pub next_id: AtomicU64,
}

type AppStateRef = Arc<AppState>;

pub fn router(state: AppStateRef, max_body_bytes: usize) -> Router {
    let guarded = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), check_api_key));
    Router::new()
        .merge(guarded)
        .route("/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_responses,
        ))
        .with_state(state)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The JSON body as `T`, or a 400 (bad JSON, wrong fields) or 413 (too large).
fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| {
        let status = r.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "the request body is larger than the server's limit (--max-body)".to_string()
        } else {
            r.body_text()
        };
        ApiError::status(status, message)
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("the request body is not valid: {e}"), None))
}

async fn check_api_key(State(st): State<AppStateRef>, req: Request, next: Next) -> Response {
    if let Some(key) = &st.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        // Compare without an early exit, so timing does not tell how much of a guess matched.
        let ok = given.is_some_and(|g| {
            g.len() == key.len()
                && g.bytes()
                    .zip(key.bytes())
                    .fold(0u8, |d, (a, b)| d | (a ^ b))
                    == 0
        });
        if !ok {
            return ApiError::status(
                StatusCode::UNAUTHORIZED,
                "missing or wrong API key (send Authorization: Bearer KEY)",
            )
            .with_code("invalid_api_key")
            .into_response();
        }
    }
    next.run(req).await
}

async fn count_responses(State(st): State<AppStateRef>, req: Request, next: Next) -> Response {
    let r = next.run(req).await;
    st.metrics.count_response(r.status().as_u16());
    r
}

async fn not_found() -> ApiError {
    ApiError::status(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::status(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
    )
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn models(State(st): State<AppStateRef>) -> Json<serde_json::Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": st.model_id,
            "object": "model",
            "created": st.created,
            "owned_by": "edge-serve",
        }],
    }))
}

async fn metrics(State(st): State<AppStateRef>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
        .into_response()
}

async fn chat(
    State(st): State<AppStateRef>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: ChatRequest = parse(body)?;
    let messages = st.messages(&req.messages)?;
    let text = st
        .model
        .apply_chat_template(&messages, true)
        .map_err(|e| ApiError::invalid(e.to_string(), Some("messages")))?;
    let prompt = st
        .model
        .tokenize(&text, false)
        .map_err(|e| ApiError::invalid(e.to_string(), Some("messages")))?;
    let max_tokens = req.max_completion_tokens.or(req.max_tokens);
    st.generate(Endpoint::Chat, prompt, req.sampling, max_tokens)
        .await
}

async fn completions(
    State(st): State<AppStateRef>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: CompletionRequest = parse(body)?;
    let text = match req.prompt {
        api::Prompt::One(s) => s,
        api::Prompt::Many(mut v) if v.len() == 1 => v.remove(0),
        api::Prompt::Many(_) => {
            return Err(ApiError::invalid(
                "prompt: one prompt per request is supported",
                Some("prompt"),
            ))
        }
    };
    if text.is_empty() {
        return Err(ApiError::invalid("prompt is empty", Some("prompt")));
    }
    let prompt = st
        .model
        .tokenize(&text, true)
        .map_err(|e| ApiError::invalid(e.to_string(), Some("prompt")))?;
    st.generate(Endpoint::Completion, prompt, req.sampling, req.max_tokens)
        .await
}

impl AppState {
    /// The conversation as the model sees it: the persona's system prompt first when the
    /// request brings none (as edge-chat does), then the messages.
    fn messages(&self, given: &[ChatMessage]) -> Result<Vec<Message>, ApiError> {
        if given.is_empty() {
            return Err(ApiError::invalid("messages is empty", Some("messages")));
        }
        let mut out = Vec::with_capacity(given.len() + 1);
        for (i, m) in given.iter().enumerate() {
            let role = match m.role.as_str() {
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                other => {
                    return Err(ApiError::invalid(
                        format!("messages[{i}].role: {other:?} is not supported (system, developer, user, assistant)"),
                        Some("messages"),
                    ))
                }
            };
            let content = match &m.content {
                None => String::new(),
                Some(Content::Text(t)) => t.clone(),
                Some(Content::Parts(parts)) => {
                    let mut t = String::new();
                    for p in parts {
                        match (p.kind.as_str(), &p.text) {
                            ("text", Some(s)) => t.push_str(s),
                            (kind, _) => {
                                return Err(ApiError::invalid(
                                    format!("messages[{i}].content: only text parts are supported, not {kind:?}"),
                                    Some("messages"),
                                ))
                            }
                        }
                    }
                    t
                }
            };
            out.push(Message::new(role, content));
        }
        if let Some(p) = &self.persona {
            if out[0].role != "system" && !p.system.trim().is_empty() {
                out.insert(0, Message::system(p.system.clone()));
            }
        }
        Ok(out)
    }

    /// Sampling and limits from the request, over the persona's settings (or llama.cpp's
    /// defaults without one).
    fn options(
        &self,
        s: &api::Sampling,
        max_tokens: Option<u64>,
    ) -> Result<GenerateOptions, ApiError> {
        fn range(v: Option<f32>, lo: f32, hi: f32, name: &'static str) -> Result<(), ApiError> {
            match v {
                Some(x) if !(lo..=hi).contains(&x) => Err(ApiError::invalid(
                    format!("{name} = {x} is outside [{lo}, {hi}]"),
                    Some(name),
                )),
                _ => Ok(()),
            }
        }
        range(s.temperature, 0.0, 2.0, "temperature")?;
        range(s.top_p, 0.0, 1.0, "top_p")?;
        range(s.min_p, 0.0, 1.0, "min_p")?;
        range(s.presence_penalty, -2.0, 2.0, "presence_penalty")?;
        range(s.frequency_penalty, -2.0, 2.0, "frequency_penalty")?;
        range(s.repeat_penalty, 0.0, 10.0, "repeat_penalty")?;
        if s.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid(
                "n: only 1 choice is supported",
                Some("n"),
            ));
        }
        if max_tokens == Some(0) {
            return Err(ApiError::invalid(
                "max_tokens must be at least 1",
                Some("max_tokens"),
            ));
        }
        let stop = s.stop.clone().map(api::Stop::into_vec).unwrap_or_default();
        if stop.len() > 16 {
            return Err(ApiError::invalid("stop: at most 16 strings", Some("stop")));
        }
        let seed = s.seed.unwrap_or_else(|| random_seed(&self.next_id));
        let (mut sampler, default_max) = match &self.persona {
            Some(p) => (p.sampling.sampler(seed), p.sampling.max_tokens),
            None => (
                SamplerConfig {
                    seed,
                    ..SamplerConfig::default()
                },
                usize::MAX,
            ),
        };
        if let Some(t) = s.temperature {
            sampler.temperature = t;
        }
        if let Some(v) = s.top_p {
            sampler.top_p = v;
        }
        if let Some(v) = s.top_k {
            sampler.top_k = v;
        }
        if let Some(v) = s.min_p {
            sampler.min_p = v;
        }
        if let Some(v) = s.presence_penalty {
            sampler.presence_penalty = v;
        }
        if let Some(v) = s.frequency_penalty {
            sampler.frequency_penalty = v;
        }
        if let Some(v) = s.repeat_penalty {
            sampler.repeat_penalty = v;
        }
        Ok(GenerateOptions {
            max_tokens: max_tokens.map_or(default_max, |m| m.min(usize::MAX as u64) as usize),
            sampler,
            stop,
            ..GenerateOptions::default()
        })
    }

    async fn generate(
        &self,
        endpoint: Endpoint,
        prompt: Vec<u32>,
        sampling: api::Sampling,
        max_tokens: Option<u64>,
    ) -> Result<Response, ApiError> {
        if prompt.len() >= self.n_ctx {
            return Err(ApiError::invalid(
                format!(
                    "the prompt is {} tokens; this server's context is {} tokens per request (prompt and reply)",
                    prompt.len(),
                    self.n_ctx
                ),
                Some("messages"),
            )
            .with_code("context_length_exceeded"));
        }
        let opts = self.options(&sampling, max_tokens)?;
        let (tx, rx) = unbounded_channel();
        if !self.queue.try_push(Job {
            prompt,
            opts,
            events: tx,
        }) {
            self.metrics.rejected.fetch_add(1, Ordering::Relaxed);
            let mut e = ApiError::status(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is busy: every slot is taken and the queue is full; retry shortly",
            )
            .with_code("queue_full");
            e.retry_after = Some(1);
            return Err(e);
        }
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let header = Header {
            id: match endpoint {
                Endpoint::Chat => format!("chatcmpl-{n:x}"),
                Endpoint::Completion => format!("cmpl-{n:x}"),
            },
            endpoint,
            created: unix_now(),
            model: self.model_id.clone(),
        };
        if sampling.stream {
            let include_usage = sampling.stream_options.is_some_and(|o| o.include_usage);
            Ok(stream(header, rx, include_usage).into_response())
        } else {
            collect(header, rx).await
        }
    }
}

/// A seed per request when the client gives none (time and a counter, mixed).
fn random_seed(counter: &AtomicU64) -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z = t ^ counter
        .load(Ordering::Relaxed)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z ^ (z >> 31)
}

/// The whole reply as one JSON response.
async fn collect(
    header: Header,
    mut rx: UnboundedReceiver<JobEvent>,
) -> Result<Response, ApiError> {
    let mut text = String::new();
    while let Some(ev) = rx.recv().await {
        match ev {
            JobEvent::Text(t) => text.push_str(&t),
            JobEvent::Done {
                reason,
                prompt_tokens,
                completion_tokens,
                cached_tokens,
            } => {
                let usage = api::Usage::new(prompt_tokens, completion_tokens, cached_tokens);
                let body = header.response(&text, api::finish_reason(reason), usage);
                return Ok(Json(body).into_response());
            }
            JobEvent::Failed(m) => {
                return Err(ApiError::status(StatusCode::INTERNAL_SERVER_ERROR, m))
            }
        }
    }
    Err(ApiError::status(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the decode thread stopped",
    ))
}

struct StreamState {
    rx: UnboundedReceiver<JobEvent>,
    header: Header,
    include_usage: bool,
    /// The first chat chunk carries the assistant role.
    first: bool,
    queued: VecDeque<Event>,
    finished: bool,
}

fn data(v: &serde_json::Value) -> Event {
    Event::default().data(v.to_string())
}

/// The reply as server-sent events: one chunk per text piece, a chunk with the finish reason,
/// the usage chunk when asked for, then `[DONE]`. Dropping the stream (the client went away)
/// closes the channel, which cancels the generation.
fn stream(
    header: Header,
    rx: UnboundedReceiver<JobEvent>,
    include_usage: bool,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let mut queued = VecDeque::new();
    let first = header.endpoint == Endpoint::Chat;
    if first {
        // OpenAI opens a chat stream with the role and empty content.
        queued.push_back(data(&header.chunk(Some(""), true, None)));
    }
    let state = StreamState {
        rx,
        header,
        include_usage,
        first: false,
        queued,
        finished: false,
    };
    let events = futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(e) = st.queued.pop_front() {
                return Some((Ok(e), st));
            }
            if st.finished {
                return None;
            }
            match st.rx.recv().await {
                Some(JobEvent::Text(t)) => {
                    let first = std::mem::take(&mut st.first);
                    return Some((Ok(data(&st.header.chunk(Some(&t), first, None))), st));
                }
                Some(JobEvent::Done {
                    reason,
                    prompt_tokens,
                    completion_tokens,
                    cached_tokens,
                }) => {
                    let finish = api::finish_reason(reason);
                    st.queued
                        .push_back(data(&st.header.chunk(None, false, Some(finish))));
                    if st.include_usage {
                        let usage =
                            api::Usage::new(prompt_tokens, completion_tokens, cached_tokens);
                        st.queued.push_back(data(&st.header.usage_chunk(usage)));
                    }
                    st.queued.push_back(Event::default().data("[DONE]"));
                    st.finished = true;
                }
                Some(JobEvent::Failed(m)) => {
                    st.queued
                        .push_back(data(&api::error_body(&m, "server_error", None, None)));
                    st.queued.push_back(Event::default().data("[DONE]"));
                    st.finished = true;
                }
                None => st.finished = true,
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}
