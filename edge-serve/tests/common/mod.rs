//! What edge-serve's tests share: the model, a server on a free port, and the reply an
//! edge-runtime `Session` gives a request alone (the reference every served reply must equal).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use serde_json::{json, Value};

use edge_runtime::{
    GenerateOptions, LoadOptions, Message, Model, SamplerConfig, Session, SessionOptions,
};
use edge_serve::{Server, ServerConfig};

pub fn model() -> Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| {
        let p = test_support::repo().join("assets/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert!(
            p.exists(),
            "{} is missing: run scripts/fetch-assets.sh",
            p.display()
        );
        Arc::new(Model::load(p, LoadOptions::default()).expect("load"))
    })
    .clone()
}

pub fn start(config: ServerConfig) -> Server {
    Server::start(
        model(),
        ServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            n_ctx: 1024,
            n_threads: 2,
            n_batch: 64,
            ..config
        },
    )
    .expect("server starts")
}

pub const PROMPTS: &[&str] = &[
    "I feel lonely today. Can you talk with me?",
    "我最近压力很大，晚上总是睡不着。",
    "Write a short poem about the sea.",
    "Give me three tips to calm down before an exam.",
];

/// What a fresh `Session` replies to `messages`, greedy.
/// A fresh session with the servers' context, threads and batch.
pub fn session() -> Session {
    Session::new(
        model(),
        SessionOptions {
            n_ctx: 1024,
            n_threads: 2,
            n_batch: 64,
        },
    )
    .expect("session")
}

pub fn alone(messages: &[Message], max_tokens: usize, stop: &[&str]) -> String {
    alone_with(messages, max_tokens, stop, SamplerConfig::greedy())
}

pub fn alone_with(
    messages: &[Message],
    max_tokens: usize,
    stop: &[&str],
    sampler: SamplerConfig,
) -> String {
    session()
        .chat(
            messages,
            GenerateOptions {
                max_tokens,
                sampler,
                stop: stop.iter().map(|s| s.to_string()).collect(),
                ..GenerateOptions::default()
            },
        )
        .expect("chat")
        .text()
        .expect("text")
}

pub fn chat_body(prompt: &str, max_tokens: usize) -> Value {
    json!({
        "model": "any",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
    })
}

pub fn content(v: &Value) -> &str {
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no content in {v}"))
}

/// The `data:` payloads of a server-sent-events body.
pub fn sse_data(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data: ").map(str::to_string))
        .collect()
}

/// The text of a streamed chat reply: the chunks' `delta.content`, joined.
pub fn streamed_content(body: &str) -> String {
    sse_data(body)
        .iter()
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| {
            let v: Value = serde_json::from_str(d).expect("chunk");
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}
