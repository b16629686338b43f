//! edge-serve over real HTTP on the real SmolLM2 model: replies equal what an edge-runtime
//! `Session` gives the same request alone (whole, streamed, concurrent, with stop strings and
//! a persona), a client that disconnects cancels its generation, a full queue answers 503 with
//! Retry-After, and malformed requests get OpenAI's error shape with the right status.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common;

use common::{
    alone, alone_with, chat_body, content, session, sse_data, start, streamed_content, PROMPTS,
};
use edge_runtime::persona;
use edge_runtime::{GenerateOptions, Message, SamplerConfig};
use edge_serve::{Server, ServerConfig};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// POST a JSON body; (status, parsed body).
fn post(server: &Server, path: &str, body: &Value) -> (u16, Value) {
    let mut r = agent()
        .post(&format!("http://{}{path}", server.addr()))
        .send_json(body)
        .expect("request");
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().expect("json body"))
}

/// POST raw bytes; (status, Retry-After, body text).
fn post_raw(server: &Server, path: &str, body: &[u8]) -> (u16, Option<String>, String) {
    let mut r = agent()
        .post(&format!("http://{}{path}", server.addr()))
        .header("content-type", "application/json")
        .send(body)
        .expect("request");
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ascii").to_string());
    (
        r.status().as_u16(),
        retry,
        r.body_mut().read_to_string().expect("body"),
    )
}

fn get_text(server: &Server, path: &str) -> String {
    agent()
        .get(&format!("http://{}{path}", server.addr()))
        .call()
        .expect("request")
        .body_mut()
        .read_to_string()
        .expect("body")
}

/// A metric's value from `/metrics`.
fn metric(server: &Server, name: &str) -> f64 {
    let text = get_text(server, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in:\n{text}"))
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(t0.elapsed() < Duration::from_secs(30), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn replies_whole_streamed_and_concurrent_equal_each_request_alone() {
    let server = start(ServerConfig {
        parallel: 4,
        ..ServerConfig::default()
    });
    // Whole.
    let (status, v) = post(&server, "/v1/chat/completions", &chat_body(PROMPTS[0], 40));
    assert_eq!(status, 200, "{v}");
    let reference = alone(&[Message::user(PROMPTS[0])], 40, &[]);
    assert_eq!(content(&v), reference);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 40);
    let prompt_tokens = v["usage"]["prompt_tokens"].as_u64().expect("usage");
    assert_eq!(v["usage"]["total_tokens"], prompt_tokens + 40);

    // Streamed: the same text in chunks, the role first, the finish reason, usage, [DONE].
    let mut body = chat_body(PROMPTS[0], 40);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (status, _, text) = post_raw(&server, "/v1/chat/completions", body.to_string().as_bytes());
    assert_eq!(status, 200, "{text}");
    let data = sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).expect("chunk json"))
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, reference);
    assert!(chunks.len() > 10, "{} chunks", chunks.len());
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    let usage = &chunks[chunks.len() - 1]["usage"];
    assert_eq!(usage["completion_tokens"], 40);
    // The second run of the same prompt found it in a slot's cache.
    assert_eq!(
        usage["prompt_tokens_details"]["cached_tokens"],
        prompt_tokens - 1
    );

    // Concurrent: four different chats at once, each as if alone.
    let replies: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = PROMPTS
            .iter()
            .map(|p| {
                let server = &server;
                s.spawn(move || {
                    let (status, v) = post(server, "/v1/chat/completions", &chat_body(p, 48));
                    assert_eq!(status, 200, "{v}");
                    content(&v).to_string()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    for (p, r) in PROMPTS.iter().zip(&replies) {
        assert_eq!(r, &alone(&[Message::user(*p)], 48, &[]), "prompt {p:?}");
    }

    // Text completion.
    let (status, v) = post(
        &server,
        "/v1/completions",
        &json!({"prompt": "The capital of France is", "max_tokens": 12, "temperature": 0}),
    );
    assert_eq!(status, 200, "{v}");
    let expected = session()
        .complete(
            "The capital of France is",
            GenerateOptions {
                max_tokens: 12,
                sampler: SamplerConfig::greedy(),
                ..GenerateOptions::default()
            },
        )
        .expect("complete")
        .text()
        .expect("text");
    assert_eq!(v["choices"][0]["text"], expected);
    assert_eq!(v["object"], "text_completion");

    // Models and health.
    let models: Value = serde_json::from_str(&get_text(&server, "/v1/models")).expect("json");
    assert_eq!(models["data"][0]["id"], "SmolLM2-135M-Instruct.Q4_1");
    assert_eq!(get_text(&server, "/health"), r#"{"status":"ok"}"#);
    assert!(metric(&server, "edge_serve_requests_completed_total") >= 7.0);
}

#[test]
fn stop_strings_and_the_persona_apply_as_in_edge_chat() {
    let listener = persona::load_all(None)
        .expect("personas")
        .into_iter()
        .find(|p| p.name == "listener")
        .expect("the listener persona");
    let server = start(ServerConfig {
        parallel: 2,
        persona: Some(listener.clone()),
        ..ServerConfig::default()
    });
    // The persona's system prompt comes first when the request has none, and its sampling
    // settings (here its repeat penalty) apply under the request's own.
    let with_persona = [
        Message::system(listener.system.clone()),
        Message::user(PROMPTS[0]),
    ];
    let sampler = SamplerConfig {
        temperature: 0.0,
        ..listener.sampling.sampler(0)
    };
    assert_ne!(
        sampler.repeat_penalty, 1.0,
        "the test needs a persona setting to show"
    );
    let reference = alone_with(&with_persona, 40, &[], sampler.clone());
    let (status, v) = post(&server, "/v1/chat/completions", &chat_body(PROMPTS[0], 40));
    assert_eq!(status, 200, "{v}");
    assert_eq!(content(&v), reference);
    // A request's own system prompt replaces it.
    let mut body = chat_body(PROMPTS[2], 30);
    body["messages"] = json!([
        {"role": "system", "content": "You are a poet."},
        {"role": "user", "content": PROMPTS[2]},
    ]);
    let (_, v) = post(&server, "/v1/chat/completions", &body);
    assert_eq!(
        content(&v),
        alone_with(
            &[
                Message::system("You are a poet."),
                Message::user(PROMPTS[2])
            ],
            30,
            &[],
            sampler
        )
    );
    // A stop string: the reply ends before it, finish_reason "stop", streamed or not.
    let word = reference
        .split(' ')
        .nth(3)
        .expect("a reply of several words");
    let stop = format!(" {word}");
    let cut = &reference[..reference.find(&stop).expect("stop in reply")];
    let mut body = chat_body(PROMPTS[0], 40);
    body["stop"] = json!([stop, "never appears"]);
    let (_, v) = post(&server, "/v1/chat/completions", &body);
    assert_eq!(content(&v), cut);
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    body["stop"] = json!(stop);
    body["stream"] = json!(true);
    let (_, _, text) = post_raw(&server, "/v1/chat/completions", body.to_string().as_bytes());
    assert_eq!(streamed_content(&text), cut);
}

/// Send a request on a raw socket and return the socket (to read from or to drop).
fn open_request(server: &Server, body: &Value) -> TcpStream {
    let body = body.to_string();
    let mut s = TcpStream::connect(server.addr()).expect("connect");
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    s
}

/// Read a streamed response until `n` chunks carrying text have arrived.
fn read_chunks(s: &TcpStream, n: usize) {
    let mut r = BufReader::new(s);
    let mut seen = 0;
    let mut line = String::new();
    while seen < n {
        line.clear();
        assert!(r.read_line(&mut line).expect("read") > 0, "stream ended");
        if line.starts_with("data: ")
            && line.contains("\"content\":\"")
            && !line.contains("\"content\":\"\"")
        {
            seen += 1;
        }
    }
}

#[test]
fn a_client_that_disconnects_cancels_its_generation() {
    let server = start(ServerConfig {
        parallel: 2,
        ..ServerConfig::default()
    });
    // Streamed: drop the connection after a few chunks.
    let mut body = chat_body(PROMPTS[0], 5000);
    body["stream"] = json!(true);
    let s = open_request(&server, &body);
    read_chunks(&s, 3);
    drop(s);
    wait_for("the streamed generation is cancelled", || {
        metric(&server, "edge_serve_requests_cancelled_total") == 1.0
            && metric(&server, "edge_serve_requests_active") == 0.0
    });
    // It stopped long before the context (1024) filled: tokens are counted when it ends.
    let generated = metric(&server, "edge_serve_generated_tokens_total");
    assert!(generated < 200.0, "{generated} tokens generated");

    // Whole: drop the connection while it runs.
    let s = open_request(&server, &chat_body(PROMPTS[1], 5000));
    wait_for("the request runs", || {
        metric(&server, "edge_serve_requests_active") == 1.0
    });
    drop(s);
    wait_for("the whole-reply generation is cancelled", || {
        metric(&server, "edge_serve_requests_cancelled_total") == 2.0
            && metric(&server, "edge_serve_requests_active") == 0.0
    });
    assert_eq!(metric(&server, "edge_serve_requests_completed_total"), 0.0);
}

#[test]
fn a_full_queue_answers_503_with_retry_after() {
    let server = start(ServerConfig {
        parallel: 1,
        queue: 1,
        ..ServerConfig::default()
    });
    let mut long = chat_body(PROMPTS[0], 5000);
    long["stream"] = json!(true);
    let running = open_request(&server, &long);
    read_chunks(&running, 1);
    let waiting = open_request(&server, &chat_body(PROMPTS[1], 5000));
    wait_for("one request waits", || {
        metric(&server, "edge_serve_queue_depth") == 1.0
    });
    let (status, retry, text) = post_raw(
        &server,
        "/v1/chat/completions",
        chat_body(PROMPTS[2], 8).to_string().as_bytes(),
    );
    assert_eq!(status, 503, "{text}");
    assert_eq!(retry.as_deref(), Some("1"));
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["error"]["code"], "queue_full");
    assert_eq!(metric(&server, "edge_serve_requests_rejected_total"), 1.0);
    // Once the others leave, the server serves again.
    drop(running);
    drop(waiting);
    wait_for("the slot and the queue empty", || {
        metric(&server, "edge_serve_requests_active") == 0.0
            && metric(&server, "edge_serve_queue_depth") == 0.0
    });
    let (status, v) = post(&server, "/v1/chat/completions", &chat_body(PROMPTS[2], 8));
    assert_eq!(status, 200, "{v}");
}

#[test]
fn malformed_requests_get_openai_errors() {
    let server = start(ServerConfig {
        parallel: 1,
        max_body_bytes: 64 << 10,
        api_key: Some("sk-test".into()),
        ..ServerConfig::default()
    });
    let authed = |path: &str, body: &[u8]| -> (u16, Value) {
        let mut r = agent()
            .post(&format!("http://{}{path}", server.addr()))
            .header("content-type", "application/json")
            .header("authorization", "Bearer sk-test")
            .send(body)
            .expect("request");
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
        )
    };
    let cases: &[(&str, &[u8], u16, Option<&str>)] = &[
        ("/v1/chat/completions", b"{not json", 400, None),
        (
            "/v1/chat/completions",
            br#"{"messages": "hello"}"#,
            400,
            None,
        ),
        (
            "/v1/chat/completions",
            br#"{"messages": []}"#,
            400,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            br#"{"messages": [{"role": "tool", "content": "x"}]}"#,
            400,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            br#"{"messages": [{"role": "user", "content": "hi"}], "temperature": 7}"#,
            400,
            Some("temperature"),
        ),
        (
            "/v1/chat/completions",
            br#"{"messages": [{"role": "user", "content": "hi"}], "n": 3}"#,
            400,
            Some("n"),
        ),
        (
            "/v1/chat/completions",
            br#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}"#,
            400,
            Some("max_tokens"),
        ),
        ("/v1/completions", br#"{"prompt": ""}"#, 400, Some("prompt")),
        ("/v1/nothing", b"{}", 404, None),
    ];
    for (path, body, status, param) in cases {
        let (got, v) = authed(path, body);
        let shown = String::from_utf8_lossy(body);
        assert_eq!(got, *status, "{shown}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{v}"
        );
        let kind = if *status == 404 {
            "not_found_error"
        } else {
            "invalid_request_error"
        };
        assert_eq!(v["error"]["type"], kind, "{shown}");
        if let Some(p) = param {
            assert_eq!(v["error"]["param"], *p, "{shown}: {v}");
        }
    }
    // A prompt longer than the context.
    let long = "word ".repeat(2000);
    let (status, v) = authed(
        "/v1/chat/completions",
        chat_body(&long, 8).to_string().as_bytes(),
    );
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    // A body over the limit.
    let huge = json!({"messages": [{"role": "user", "content": "x".repeat(100 << 10)}]});
    let (status, v) = authed("/v1/chat/completions", huge.to_string().as_bytes());
    assert_eq!(status, 413, "{v}");
    // Without the key, or with a wrong one.
    let (status, _, text) = post_raw(
        &server,
        "/v1/chat/completions",
        chat_body("hi", 4).to_string().as_bytes(),
    );
    assert_eq!(status, 401, "{text}");
    let v: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["error"]["code"], "invalid_api_key");
    // Health needs no key; the server still works after all that.
    assert_eq!(get_text(&server, "/health"), r#"{"status":"ok"}"#);
    let (status, v) = authed(
        "/v1/chat/completions",
        chat_body("hi", 4).to_string().as_bytes(),
    );
    assert_eq!(status, 200, "{v}");
    let mut raw = TcpStream::connect(server.addr()).expect("connect");
    // A request line that is not HTTP: the connection is answered or closed, never hung.
    raw.write_all(b"NONSENSE\r\n\r\n").expect("send");
    raw.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = Vec::new();
    let _ = raw.read_to_end(&mut buf);
    assert!(
        buf.is_empty() || buf.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
}
