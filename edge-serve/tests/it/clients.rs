//! Real clients against edge-serve: `curl` (CI tier) and the official `openai` Python client
//! (full tier; `scripts/test.sh --full` installs it), each running a streamed and a
//! non-streamed chat whose replies must equal edge-runtime's for the same request alone.

use crate::common;

use std::process::Command;

use serde_json::Value;

use common::{alone, chat_body, sse_data, start, streamed_content, PROMPTS};
use edge_runtime::Message;
use edge_serve::ServerConfig;

fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--max-time", "120"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        out.status.success(),
        "curl {args:?}: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn curl_runs_a_streamed_and_a_whole_chat() {
    if !test_support::have_tool("curl") {
        return test_support::skip(
            "edge-serve::curl_runs_a_streamed_and_a_whole_chat",
            "curl is not installed",
        );
    }
    let server = start(ServerConfig::default());
    let url = format!("http://{}/v1/chat/completions", server.addr());
    let reference = alone(&[Message::user(PROMPTS[1])], 32, &[]);
    let body = chat_body(PROMPTS[1], 32);
    let whole: Value = serde_json::from_str(&curl(&[
        &url,
        "-H",
        "Content-Type: application/json",
        "-d",
        &body.to_string(),
    ]))
    .expect("json");
    assert_eq!(
        whole["choices"][0]["message"]["content"],
        reference.as_str()
    );
    let mut body = body;
    body["stream"] = true.into();
    let text = curl(&["-N", &url, "-d", &body.to_string()]);
    assert_eq!(sse_data(&text).last().map(String::as_str), Some("[DONE]"));
    assert_eq!(streamed_content(&text), reference);
}

#[test]
#[ignore = "full tier: the openai Python package (scripts/test.sh --full installs it)"]
fn the_openai_python_client_runs_a_streamed_and_a_whole_chat() {
    let python = std::env::var("OPENAI_PYTHON").unwrap_or_else(|_| "python3".into());
    let has_openai = Command::new(&python)
        .args(["-c", "import openai"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_openai {
        return test_support::skip(
            "edge-serve::the_openai_python_client_runs_a_streamed_and_a_whole_chat",
            &format!("{python} cannot import openai (set OPENAI_PYTHON)"),
        );
    }
    let server = start(ServerConfig::default());
    let script = test_support::repo().join("edge-serve/tests/clients/openai_chat.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(format!("http://{}/v1", server.addr()))
        .arg(PROMPTS[0])
        .arg("32")
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let reference = alone(&[Message::user(PROMPTS[0])], 32, &[]);
    assert_eq!(v["whole"], reference.as_str());
    assert_eq!(v["streamed"], reference.as_str());
    assert_eq!(v["whole_finish"], "length");
    assert_eq!(v["streamed_finish"], "length");
    assert_eq!(v["whole_usage"]["completion_tokens"], 32);
    assert_eq!(v["streamed_usage"]["completion_tokens"], 32);
    assert_eq!(v["models"][0], "SmolLM2-135M-Instruct.Q4_1");
}
