//! SFT and preference data in the JSONL forms LLaMA-Factory users have, rendered with the
//! model's chat template (llama-spec, so training and the edge runtime format conversations
//! identically) and tokenized once, with a mask of the tokens that are trained.
//!
//! SFT lines: OpenAI `{"messages": [{"role", "content"}, ...]}`, ShareGPT
//! `{"conversations": [{"from": "human"|"gpt"|"system", "value"}, ...], "system"?}`, or Alpaca
//! `{"instruction", "input"?, "output", "system"?}`.
//! Preference lines: `{"prompt": "..." | [messages], "chosen": ..., "rejected": ...}` where a
//! response is a string, a message, or a list of messages whose last is the assistant's; also
//! `{"messages" | "conversations": [...], "chosen", "rejected"}` (LLaMA-Factory's form).
//!
//! The trained span of an assistant turn is what the template renders after the generation
//! prompt up to the end of that turn (Llama-3: the content and `<|eot_id|>`), found by
//! rendering the conversation's prefixes, the way transformers' `{% generation %}` blocks mark
//! it; every token that starts inside a span is trained.

use llama_spec::chat::{ChatTemplate, Message};
use serde_json::Value;

/// Why a record cannot be trained on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RecordError(pub String);

impl From<&str> for RecordError {
    fn from(s: &str) -> Self {
        RecordError(s.to_string())
    }
}

impl From<String> for RecordError {
    fn from(s: String) -> Self {
        RecordError(s)
    }
}

/// One tokenized conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<u32>,
    /// `mask[t]`: token `t` is an assistant token the loss is taken on.
    pub mask: Vec<bool>,
}

impl Encoded {
    pub fn trained(&self) -> usize {
        self.mask.iter().filter(|&&m| m).count()
    }
}

/// Which assistant turns are trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turns {
    /// Every assistant turn (SFT).
    All,
    /// Only the last one (the response of a preference pair).
    Last,
}

fn role_of(from: &str) -> Option<&'static str> {
    match from {
        "system" => Some("system"),
        "human" | "user" => Some("user"),
        "gpt" | "assistant" | "bot" | "model" => Some("assistant"),
        _ => None,
    }
}

fn messages_of(v: &Value) -> Result<Vec<Message>, RecordError> {
    let list = v.as_array().ok_or("expected a list of messages")?;
    list.iter()
        .map(|m| {
            let (role, content) = match (m.get("role"), m.get("from")) {
                (Some(r), _) => (r.as_str(), m.get("content")),
                (None, Some(f)) => (f.as_str(), m.get("value")),
                _ => (None, None),
            };
            let role = role
                .and_then(role_of)
                .ok_or_else(|| RecordError(format!("message without a known role/from: {m}")))?;
            let content = content
                .and_then(Value::as_str)
                .ok_or_else(|| RecordError(format!("message without string content/value: {m}")))?;
            Ok(Message::new(role, content))
        })
        .collect()
}

fn with_system(v: &Value, mut msgs: Vec<Message>) -> Vec<Message> {
    if let Some(s) = v.get("system").and_then(Value::as_str) {
        if !s.is_empty() && msgs.first().is_none_or(|m| m.role != "system") {
            msgs.insert(0, Message::system(s));
        }
    }
    msgs
}

fn check_dialogue(msgs: &[Message]) -> Result<(), RecordError> {
    if !msgs.iter().any(|m| m.role == "assistant") {
        return Err("no assistant turn to train on".into());
    }
    if msgs.iter().any(|m| m.content.trim().is_empty()) {
        return Err("a message is empty".into());
    }
    Ok(())
}

/// An SFT record.
pub fn parse_sft(v: &Value) -> Result<Vec<Message>, RecordError> {
    let msgs = if let Some(m) = v.get("messages") {
        with_system(v, messages_of(m)?)
    } else if let Some(c) = v.get("conversations") {
        with_system(v, messages_of(c)?)
    } else if let Some(instr) = v.get("instruction").and_then(Value::as_str) {
        let input = v.get("input").and_then(Value::as_str).unwrap_or("");
        let user = if input.is_empty() {
            instr.to_string()
        } else {
            format!("{instr}\n\n{input}")
        };
        let out = v
            .get("output")
            .and_then(Value::as_str)
            .ok_or("alpaca record without a string \"output\"")?;
        with_system(v, vec![Message::user(user), Message::assistant(out)])
    } else {
        return Err(
            "expected \"messages\", \"conversations\" or \"instruction\"/\"output\"".into(),
        );
    };
    check_dialogue(&msgs)?;
    Ok(msgs)
}

/// A preference record: the prompt messages and the chosen and rejected replies.
pub fn parse_preference(v: &Value) -> Result<(Vec<Message>, String, String), RecordError> {
    let prompt = match (v.get("prompt"), v.get("messages"), v.get("conversations")) {
        (Some(Value::String(s)), _, _) => vec![Message::user(s.as_str())],
        (Some(p), _, _) => messages_of(p)?,
        (None, Some(m), _) => messages_of(m)?,
        (None, None, Some(c)) => messages_of(c)?,
        _ => return Err("expected \"prompt\", \"messages\" or \"conversations\"".into()),
    };
    let prompt = with_system(v, prompt);
    if prompt.last().is_none_or(|m| m.role != "user") {
        return Err("the prompt must end with a user message".into());
    }
    let reply = |key: &str| -> Result<String, RecordError> {
        let r = v
            .get(key)
            .ok_or_else(|| RecordError(format!("no {key:?}")))?;
        let text = match r {
            Value::String(s) => Some(s.clone()),
            Value::Array(_) => messages_of(r)?
                .into_iter()
                .last()
                .filter(|m| m.role == "assistant")
                .map(|m| m.content),
            Value::Object(_) => messages_of(&Value::Array(vec![r.clone()]))?
                .pop()
                .map(|m| m.content),
            _ => None,
        };
        text.filter(|t| !t.trim().is_empty())
            .ok_or_else(|| RecordError(format!("{key:?} is not a non-empty reply")))
    };
    Ok((prompt, reply("chosen")?, reply("rejected")?))
}

/// Render `msgs` with `template`, tokenize the text (special tokens written in it, such as
/// `<|begin_of_text|>`, become their ids; nothing else is added), and mark the trained tokens.
pub fn encode(
    tokenizer: &tokenizers::Tokenizer,
    template: &ChatTemplate,
    msgs: &[Message],
    turns: Turns,
) -> Result<Encoded, RecordError> {
    let full = template
        .render(msgs, false)
        .map_err(|e| RecordError(format!("chat template: {e}")))?;
    let assistant: Vec<usize> = msgs
        .iter()
        .enumerate()
        .filter(|(_, m)| m.role == "assistant")
        .map(|(i, _)| i)
        .collect();
    let chosen: &[usize] = match turns {
        Turns::All => &assistant,
        Turns::Last => &assistant[assistant.len().saturating_sub(1)..],
    };
    let mut spans = Vec::new();
    for &i in chosen {
        let before = template
            .render(&msgs[..i], true)
            .map_err(|e| RecordError(format!("chat template: {e}")))?;
        let through = template
            .render(&msgs[..=i], false)
            .map_err(|e| RecordError(format!("chat template: {e}")))?;
        if !through.starts_with(&before) || !full.starts_with(&through) {
            return Err(
                "the chat template does not render conversations as prefixes of each other, so assistant turns cannot be located".into(),
            );
        }
        spans.push((before.len(), through.len()));
    }
    let enc = tokenizer
        .encode(full.as_str(), false)
        .map_err(|e| RecordError(format!("tokenizing: {e}")))?;
    let ids = enc.get_ids().to_vec();
    let mask = enc
        .get_offsets()
        .iter()
        .map(|&(start, _)| spans.iter().any(|&(a, b)| start >= a && start < b))
        .collect();
    Ok(Encoded { ids, mask })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_to_the_same_dialogue() {
        let want = vec![
            Message::system("Be kind."),
            Message::user("I feel lonely."),
            Message::assistant("I'm here with you."),
        ];
        let openai: Value = serde_json::json!({"messages": [
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "I feel lonely."},
            {"role": "assistant", "content": "I'm here with you."}]});
        let sharegpt: Value = serde_json::json!({"system": "Be kind.", "conversations": [
            {"from": "human", "value": "I feel lonely."},
            {"from": "gpt", "value": "I'm here with you."}]});
        let alpaca: Value = serde_json::json!({"system": "Be kind.",
            "instruction": "I feel lonely.", "input": "", "output": "I'm here with you."});
        for v in [openai, sharegpt, alpaca] {
            assert_eq!(parse_sft(&v).expect("parse"), want, "{v}");
        }
        let bad = serde_json::json!({"messages": [{"role": "user", "content": "hi"}]});
        assert!(parse_sft(&bad)
            .expect_err("no assistant")
            .0
            .contains("assistant"));
        let bad = serde_json::json!({"messages": [{"role": "wizard", "content": "hi"}]});
        assert!(parse_sft(&bad).expect_err("role").0.contains("role"));
    }

    #[test]
    fn preference_forms() {
        let a = serde_json::json!({"prompt": "Hi", "chosen": "Hello!", "rejected": "Go away."});
        let b = serde_json::json!({
            "conversations": [{"from": "human", "value": "Hi"}],
            "chosen": {"from": "gpt", "value": "Hello!"},
            "rejected": {"from": "gpt", "value": "Go away."}});
        let c = serde_json::json!({
            "prompt": [{"role": "user", "content": "Hi"}],
            "chosen": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
            "rejected": [{"role": "assistant", "content": "Go away."}]});
        for v in [a, b, c] {
            let (p, ch, rj) = parse_preference(&v).expect("parse");
            assert_eq!(p, vec![Message::user("Hi")]);
            assert_eq!((ch.as_str(), rj.as_str()), ("Hello!", "Go away."));
        }
        let bad = serde_json::json!({"prompt": "Hi", "chosen": "", "rejected": "x"});
        assert!(parse_preference(&bad).is_err());
    }
}
