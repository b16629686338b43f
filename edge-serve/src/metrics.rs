//! Counters and gauges for `/metrics`, in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Metrics {
    /// HTTP responses by status code.
    responses: Mutex<BTreeMap<u16, u64>>,
    /// Generations that ran to an end (token, stop string, limit, full context).
    pub completed: AtomicU64,
    /// Generations ended because the client went away.
    pub cancelled: AtomicU64,
    /// Requests refused because the queue was full (503).
    pub rejected: AtomicU64,
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens found already computed in a slot's cache.
    pub cached_prompt_tokens: AtomicU64,
    pub generated_tokens: AtomicU64,
    /// Requests waiting for a slot.
    pub queue_depth: AtomicU64,
    /// Requests in slots (prefilling or decoding).
    pub active: AtomicU64,
    /// Generated tokens per second over the recent decode steps (f64 bits).
    tokens_per_second: AtomicU64,
    pub slots: AtomicU64,
}

impl Metrics {
    pub fn count_response(&self, status: u16) {
        let mut m = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(status).or_default() += 1;
    }

    pub fn set_tokens_per_second(&self, v: f64) {
        self.tokens_per_second.store(v.to_bits(), Ordering::Relaxed);
    }

    pub fn tokens_per_second(&self) -> f64 {
        f64::from_bits(self.tokens_per_second.load(Ordering::Relaxed))
    }

    /// The Prometheus exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut put = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP edge_serve_{name} {help}");
            let _ = writeln!(out, "# TYPE edge_serve_{name} {kind}");
            let _ = writeln!(out, "edge_serve_{name} {value}");
        };
        let counters: [(&str, &str, &str, &AtomicU64); 9] = [
            (
                "requests_completed_total",
                "counter",
                "Generations that ran to an end.",
                &self.completed,
            ),
            (
                "requests_cancelled_total",
                "counter",
                "Generations cancelled because the client disconnected.",
                &self.cancelled,
            ),
            (
                "requests_rejected_total",
                "counter",
                "Requests refused with 503 because the queue was full.",
                &self.rejected,
            ),
            (
                "prompt_tokens_total",
                "counter",
                "Prompt tokens received.",
                &self.prompt_tokens,
            ),
            (
                "prompt_tokens_cached_total",
                "counter",
                "Prompt tokens reused from a slot's KV cache.",
                &self.cached_prompt_tokens,
            ),
            (
                "generated_tokens_total",
                "counter",
                "Tokens generated.",
                &self.generated_tokens,
            ),
            (
                "queue_depth",
                "gauge",
                "Requests waiting for a slot.",
                &self.queue_depth,
            ),
            (
                "requests_active",
                "gauge",
                "Requests decoding or prefilling.",
                &self.active,
            ),
            ("slots", "gauge", "Decoding slots.", &self.slots),
        ];
        for (name, kind, help, value) in counters {
            put(name, kind, help, value.load(Ordering::Relaxed).to_string());
        }
        put(
            "tokens_per_second",
            "gauge",
            "Generated tokens per second over recent decode steps.",
            format!("{:.3}", self.tokens_per_second()),
        );
        let _ = writeln!(
            out,
            "# HELP edge_serve_http_responses_total HTTP responses by status code."
        );
        let _ = writeln!(out, "# TYPE edge_serve_http_responses_total counter");
        let m = self.responses.lock().unwrap_or_else(|e| e.into_inner());
        for (status, n) in m.iter() {
            let _ = writeln!(
                out,
                "edge_serve_http_responses_total{{status=\"{status}\"}} {n}"
            );
        }
        out
    }
}
