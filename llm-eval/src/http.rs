//! A model behind any OpenAI-compatible HTTP endpoint (llama.cpp's `llama-server`, vLLM,
//! edge-serve): `POST {base}/chat/completions`, greedy (`temperature: 0`). It answers the
//! chat-level requests (`LanguageModel::chat`: the Turing test, judged answers, a judge's
//! verdicts); token-level requests (log-likelihoods, token ids) are refused with an error that
//! says so. Plain `http://` only (local servers; no TLS is linked).

use std::time::Duration;

use llama_spec::chat::Message;
use serde_json::{json, Value};

use crate::backend::{GenOutput, GenRequest, LanguageModel, Loglik, LoglikRequest};
use crate::error::{EvalError, Result};

pub struct OpenAiModel {
    /// `http://host:port/v1`, without a trailing slash.
    base: String,
    /// The `model` field sent (what `/v1/models` lists).
    model: String,
    api_key: Option<String>,
    agent: ureq::Agent,
}

impl OpenAiModel {
    /// `base` is the API root (`http://127.0.0.1:8080/v1`; a URL without `/v1` gets it).
    /// `model` names the served model; `None` asks `/models` for the first one.
    pub fn connect(base: &str, model: Option<&str>, api_key: Option<String>) -> Result<Self> {
        let mut base = base.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            return Err(EvalError::Model(format!(
                "{base}: only http:// endpoints are supported (no TLS is linked)"
            )));
        }
        if !base.ends_with("/v1") {
            base.push_str("/v1");
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(600)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut m = Self {
            base,
            model: model.unwrap_or_default().to_string(),
            api_key,
            agent,
        };
        if m.model.is_empty() {
            let v = m.get("models")?;
            m.model = v["data"][0]["id"]
                .as_str()
                .ok_or_else(|| m.error("models", "lists no model"))?
                .to_string();
        }
        Ok(m)
    }

    fn error(&self, route: &str, msg: impl std::fmt::Display) -> EvalError {
        EvalError::Model(format!("{}/{route}: {msg}", self.base))
    }

    fn read(&self, route: &str, resp: ureq::http::Response<ureq::Body>) -> Result<Value> {
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .read_to_string()
            .map_err(|e| self.error(route, e))?;
        if status != 200 {
            return Err(self.error(route, format!("HTTP {status}: {}", text.trim())));
        }
        serde_json::from_str(&text)
            .map_err(|e| self.error(route, format!("not JSON ({e}): {text}")))
    }

    fn get(&self, route: &str) -> Result<Value> {
        let mut req = self.agent.get(format!("{}/{route}", self.base));
        if let Some(k) = &self.api_key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        let resp = req.call().map_err(|e| self.error(route, e))?;
        self.read(route, resp)
    }

    fn post(&self, route: &str, body: &Value) -> Result<Value> {
        let mut req = self.agent.post(format!("{}/{route}", self.base));
        if let Some(k) = &self.api_key {
            req = req.header("Authorization", format!("Bearer {k}"));
        }
        let resp = req.send_json(body).map_err(|e| self.error(route, e))?;
        self.read(route, resp)
    }

    fn token_level(&self, what: &str) -> EvalError {
        EvalError::Model(format!(
            "{} ({}): {what} needs token-level access, which an HTTP endpoint does not give; \
             run this task on a GGUF file or a checkpoint",
            self.model, self.base
        ))
    }
}

impl LanguageModel for OpenAiModel {
    fn name(&self) -> String {
        self.model.clone()
    }
    fn encode(&self, _text: &str) -> Result<Vec<u32>> {
        Err(self.token_level("tokenizing"))
    }
    fn bos(&self) -> Option<u32> {
        None
    }
    fn token_bytes(&self, _id: u32) -> Vec<u8> {
        Vec::new()
    }
    fn chat_prompt(&self, _messages: &[Message]) -> Result<String> {
        Err(self.token_level("rendering a chat template"))
    }
    fn max_len(&self) -> usize {
        usize::MAX
    }
    fn loglikelihood(&mut self, _reqs: &[LoglikRequest]) -> Result<Vec<Loglik>> {
        Err(self.token_level("scoring log-likelihoods"))
    }
    fn generate(&mut self, _req: &GenRequest) -> Result<GenOutput> {
        Err(self.token_level("generating from token ids"))
    }
    fn chat(&mut self, messages: &[Message], max_tokens: usize, stop: &[String]) -> Result<String> {
        let msgs: Vec<Value> = messages
            .iter()
            .map(|m| json!({"role": m.role.as_str(), "content": m.content}))
            .collect();
        let mut body = json!({
            "model": self.model,
            "messages": msgs,
            "max_tokens": max_tokens,
            "temperature": 0.0,
        });
        if !stop.is_empty() {
            body["stop"] = json!(stop);
        }
        let v = self.post("chat/completions", &body)?;
        let text = v["choices"][0]["message"]["content"]
            .as_str()
            .ok_or_else(|| {
                self.error(
                    "chat/completions",
                    format!("no choices[0].message.content in {v}"),
                )
            })?;
        Ok(match crate::backend::cut_at_stop(text, stop) {
            Some(i) => text[..i].to_string(),
            None => text.to_string(),
        })
    }
}
