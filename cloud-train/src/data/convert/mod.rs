//! Public SFT and preference data sets in their published layouts, converted to the JSONL that
//! `sft` and `dpo` read (`{"messages": [...]}` and `{"prompt": [...], "chosen", "rejected"}`),
//! with exact duplicates, empty and over-long records dropped and counted; and several
//! converted files mixed by weight into one, reproducibly.
//!
//! A record that does not have the fields its format requires is an error naming the file,
//! the line and the field: a wrong `--from` or a damaged download should stop the conversion,
//! not thin it out silently.

mod items;
mod mix;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub use items::{read_items, Location};
pub use mix::{mix, MixInput, MixReport};

use super::DataError;

/// A published layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `{"instruction", "input"?, "output", "system"?, "history"?: [[user, assistant], ...]}`
    /// (Stanford Alpaca, MathInstruct, TigerBot, stem-zh, LLaMA-Factory's alpaca form).
    Alpaca,
    /// COIG-CQIA: the Alpaca fields plus `task_type`, `domain`, `metadata`, ... (ignored).
    CoigCqia,
    /// `{"conversations": [{"from": "human"|"gpt"|"system", "value"}], "system"?}` (Puffin).
    ShareGpt,
    /// MuTual: `{"answers": "B", "options": [4 replies], "article": "m : ... f : ...", "id"}`,
    /// one object per file: a multiple-choice next-utterance question and its answer.
    Mutual,
    /// CrossWOZ: one JSON object of dialogues by id, each with
    /// `"messages": [{"role": "usr"|"sys", "content"}, ...]`.
    CrossWoz,
    /// PKU-SafeRLHF: `{"prompt", "response_0", "response_1", "is_response_0_safe",
    /// "is_response_1_safe", "better_response_id", "safer_response_id"}`; the safer response is
    /// chosen, and when both are safe, the better one.
    PkuSafeRlhf,
    /// CValues-Comparison: `{"prompt", "pos_resp", "neg_resp", ...}`.
    CValues,
    /// huozi-rlhf: `{"prompt", "chosen", "rejected", ...}`.
    HuoziRlhf,
    /// HC3: `{"question", "human_answers": [...], "chatgpt_answers": [...]}`; the human answer is
    /// chosen over the ChatGPT one (the paper's aim is replies people take for a person's),
    /// pairing the i-th of each.
    Hc3,
    /// Any JSON/JSONL/Parquet with a field map: SFT from `instruction`/`input`/`output`/
    /// `system` or `messages`, preference pairs from `prompt`/`chosen`/`rejected`/`system`.
    Fields(BTreeMap<String, String>),
}

/// The names `--from` takes.
pub const SOURCE_NAMES: &str =
    "alpaca, coig-cqia, sharegpt (puffin), mutual, crosswoz, pku-saferlhf, cvalues, huozi-rlhf, hc3, json";

/// The keys a field map can set.
const MAP_KEYS: [&str; 8] = [
    "instruction",
    "input",
    "output",
    "system",
    "messages",
    "prompt",
    "chosen",
    "rejected",
];

impl Source {
    /// A format by name; `json` needs `map` (`ours=theirs` pairs, dotted paths allowed).
    pub fn parse(name: &str, map: &[String]) -> Result<Self, String> {
        let source = match name {
            "alpaca" => Source::Alpaca,
            "coig-cqia" => Source::CoigCqia,
            "sharegpt" | "puffin" => Source::ShareGpt,
            "mutual" => Source::Mutual,
            "crosswoz" => Source::CrossWoz,
            "pku-saferlhf" => Source::PkuSafeRlhf,
            "cvalues" => Source::CValues,
            "huozi-rlhf" => Source::HuoziRlhf,
            "hc3" => Source::Hc3,
            "json" => {
                let mut fields = BTreeMap::new();
                for m in map {
                    let (ours, theirs) = m
                        .split_once('=')
                        .ok_or_else(|| format!("--map {m:?}: expected OURS=THEIRS"))?;
                    if !MAP_KEYS.contains(&ours) {
                        return Err(format!(
                            "--map {m:?}: {ours:?} is not one of {}",
                            MAP_KEYS.join(", ")
                        ));
                    }
                    fields.insert(ours.to_string(), theirs.to_string());
                }
                let sft = fields.contains_key("output") || fields.contains_key("messages");
                let pair = fields.contains_key("chosen") && fields.contains_key("rejected");
                if sft == pair {
                    return Err(
                        "--from json: map either `output` or `messages` (SFT), or `chosen` and \
                         `rejected` (preference pairs)"
                            .into(),
                    );
                }
                Source::Fields(fields)
            }
            _ => return Err(format!("unknown format {name:?} (formats: {SOURCE_NAMES})")),
        };
        if !map.is_empty() && !matches!(source, Source::Fields(_)) {
            return Err("--map is for --from json".into());
        }
        Ok(source)
    }
}

/// A chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub role: &'static str,
    pub content: String,
}

impl Msg {
    fn new(role: &'static str, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// One converted record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Converted {
    Sft(Vec<Msg>),
    Pair {
        prompt: Vec<Msg>,
        chosen: String,
        rejected: String,
    },
}

impl Converted {
    /// The JSONL line `sft` / `dpo` read.
    pub fn to_json(&self) -> Value {
        let msgs = |m: &[Msg]| -> Value {
            m.iter()
                .map(|m| json!({"role": m.role, "content": m.content}))
                .collect()
        };
        match self {
            Converted::Sft(m) => json!({ "messages": msgs(m) }),
            Converted::Pair {
                prompt,
                chosen,
                rejected,
            } => json!({"prompt": msgs(prompt), "chosen": chosen, "rejected": rejected}),
        }
    }

    fn texts(&self) -> Vec<&str> {
        match self {
            Converted::Sft(m) => m.iter().map(|m| m.content.as_str()).collect(),
            Converted::Pair {
                prompt,
                chosen,
                rejected,
            } => prompt
                .iter()
                .map(|m| m.content.as_str())
                .chain([chosen.as_str(), rejected.as_str()])
                .collect(),
        }
    }
}

/// A record without a field its format requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn missing(field: &str, what: &str) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: format!("expected {what}"),
    }
}

/// The value at a dotted path (`a.b.0.c`).
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| match v {
        Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => v.get(key),
    })
}

fn string(v: &Value, field: &str) -> Result<String, FieldError> {
    at(v, field)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| missing(field, "a string"))
}

fn opt_string(v: &Value, field: &str) -> Result<Option<String>, FieldError> {
    match at(v, field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(missing(field, "a string")),
    }
}

fn array<'a>(v: &'a Value, field: &str) -> Result<&'a Vec<Value>, FieldError> {
    at(v, field)
        .and_then(Value::as_array)
        .ok_or_else(|| missing(field, "a list"))
}

fn with_system(system: Option<String>, mut msgs: Vec<Msg>) -> Vec<Msg> {
    if let Some(s) = system.filter(|s| !s.trim().is_empty()) {
        msgs.insert(0, Msg::new("system", s));
    }
    msgs
}

fn user_turn(instruction: String, input: Option<String>) -> Msg {
    match input.filter(|i| !i.trim().is_empty()) {
        Some(i) => Msg::new("user", format!("{instruction}\n\n{i}")),
        None => Msg::new("user", instruction),
    }
}

fn alpaca(v: &Value) -> Result<Vec<Converted>, FieldError> {
    let mut msgs = Vec::new();
    if let Some(h) = at(v, "history").filter(|h| !h.is_null()) {
        let turns = h.as_array().ok_or_else(|| missing("history", "a list"))?;
        for (k, turn) in turns.iter().enumerate() {
            let field = format!("history.{k}");
            let (Some(q), Some(a)) = (
                at(turn, "0").and_then(Value::as_str),
                at(turn, "1").and_then(Value::as_str),
            ) else {
                return Err(missing(&field, "a [user, assistant] pair of strings"));
            };
            msgs.push(Msg::new("user", q));
            msgs.push(Msg::new("assistant", a));
        }
    }
    msgs.push(user_turn(
        string(v, "instruction")?,
        opt_string(v, "input")?,
    ));
    msgs.push(Msg::new("assistant", string(v, "output")?));
    Ok(vec![Converted::Sft(with_system(
        opt_string(v, "system")?,
        msgs,
    ))])
}

/// ShareGPT / OpenAI messages: `[{"from", "value"}]` or `[{"role", "content"}]`.
fn messages(v: &Value, field: &str) -> Result<Vec<Msg>, FieldError> {
    array(v, field)?
        .iter()
        .enumerate()
        .map(|(k, m)| {
            let (role_key, text_key) = if m.get("from").is_some() {
                ("from", "value")
            } else {
                ("role", "content")
            };
            let role = m.get(role_key).and_then(Value::as_str);
            let role = match role {
                Some("human" | "user") => "user",
                Some("gpt" | "assistant" | "bot" | "chatgpt" | "model") => "assistant",
                Some("system") => "system",
                _ => {
                    return Err(missing(
                        &format!("{field}.{k}.{role_key}"),
                        "human/user, gpt/assistant or system",
                    ))
                }
            };
            let text = m
                .get(text_key)
                .and_then(Value::as_str)
                .ok_or_else(|| missing(&format!("{field}.{k}.{text_key}"), "a string"))?;
            Ok(Msg::new(role, text))
        })
        .collect()
}

fn sharegpt(v: &Value) -> Result<Vec<Converted>, FieldError> {
    let msgs = messages(v, "conversations")?;
    Ok(vec![Converted::Sft(with_system(
        opt_string(v, "system")?,
        msgs,
    ))])
}

fn mutual(v: &Value) -> Result<Vec<Converted>, FieldError> {
    let article = string(v, "article")?;
    let options = array(v, "options")?;
    let answer = string(v, "answers")?;
    let letters = ["A", "B", "C", "D", "E", "F"];
    let index = letters
        .iter()
        .position(|l| *l == answer.trim())
        .filter(|&i| i < options.len())
        .ok_or_else(|| missing("answers", "the letter of one of the options"))?;
    let mut question = format!(
        "Dialogue:\n{}\n\nWhich reply is the most appropriate next utterance?",
        article.trim()
    );
    for (k, o) in options.iter().enumerate() {
        let o = o
            .as_str()
            .ok_or_else(|| missing(&format!("options.{k}"), "a string"))?;
        question.push_str(&format!(
            "\n{}. {}",
            letters.get(k).unwrap_or(&"?"),
            o.trim()
        ));
    }
    let right = options[index].as_str().unwrap_or_default().trim();
    Ok(vec![Converted::Sft(vec![
        Msg::new("user", question),
        Msg::new("assistant", format!("{}. {right}", letters[index])),
    ])])
}

fn crosswoz(v: &Value) -> Result<Vec<Converted>, FieldError> {
    let msgs = array(v, "messages")?
        .iter()
        .enumerate()
        .map(|(k, m)| {
            let role = match m.get("role").and_then(Value::as_str) {
                Some("usr") => "user",
                Some("sys") => "assistant",
                _ => return Err(missing(&format!("messages.{k}.role"), "usr or sys")),
            };
            Ok(Msg::new(
                role,
                string(m, "content").map_err(|e| FieldError {
                    field: format!("messages.{k}.{}", e.field),
                    ..e
                })?,
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(vec![Converted::Sft(msgs)])
}

fn pair(prompt: String, system: Option<String>, chosen: String, rejected: String) -> Converted {
    Converted::Pair {
        prompt: with_system(system, vec![Msg::new("user", prompt)]),
        chosen,
        rejected,
    }
}

fn pku(v: &Value) -> Result<Vec<Converted>, FieldError> {
    let id = |field: &str| -> Result<usize, FieldError> {
        at(v, field)
            .and_then(Value::as_u64)
            .filter(|&i| i < 2)
            .map(|i| i as usize)
            .ok_or_else(|| missing(field, "0 or 1"))
    };
    let safe = |k: usize| -> Result<bool, FieldError> {
        let field = format!("is_response_{k}_safe");
        at(v, &field)
            .and_then(Value::as_bool)
            .ok_or_else(|| missing(&field, "true or false"))
    };
    let responses = [string(v, "response_0")?, string(v, "response_1")?];
    let chosen = if safe(0)? && safe(1)? {
        id("better_response_id")?
    } else {
        id("safer_response_id")?
    };
    Ok(vec![pair(
        string(v, "prompt")?,
        None,
        responses[chosen].clone(),
        responses[1 - chosen].clone(),
    )])
}

fn hc3(v: &Value) -> Result<Vec<Converted>, FieldError> {
    let question = string(v, "question")?;
    let answers = |field: &str| -> Result<Vec<String>, FieldError> {
        array(v, field)?
            .iter()
            .enumerate()
            .map(|(k, a)| {
                a.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| missing(&format!("{field}.{k}"), "a string"))
            })
            .collect()
    };
    let human = answers("human_answers")?;
    let chatgpt = answers("chatgpt_answers")?;
    Ok(human
        .into_iter()
        .zip(chatgpt)
        .map(|(h, c)| pair(question.clone(), None, h, c))
        .collect())
}

fn fields(v: &Value, map: &BTreeMap<String, String>) -> Result<Vec<Converted>, FieldError> {
    let f = |k: &str| map.get(k).map(String::as_str);
    let system = f("system").map(|s| opt_string(v, s)).transpose()?.flatten();
    if let (Some(c), Some(r)) = (f("chosen"), f("rejected")) {
        let p = f("prompt").ok_or_else(|| missing("prompt", "a --map prompt=FIELD"))?;
        return Ok(vec![pair(
            string(v, p)?,
            system,
            string(v, c)?,
            string(v, r)?,
        )]);
    }
    if let Some(m) = f("messages") {
        return Ok(vec![Converted::Sft(with_system(system, messages(v, m)?))]);
    }
    let i = f("instruction").ok_or_else(|| missing("instruction", "a --map instruction=FIELD"))?;
    let input = f("input").map(|k| opt_string(v, k)).transpose()?.flatten();
    let o = f("output").unwrap_or("output");
    Ok(vec![Converted::Sft(with_system(
        system,
        vec![
            user_turn(string(v, i)?, input),
            Msg::new("assistant", string(v, o)?),
        ],
    ))])
}

/// The records of one source item (a line, an array element, a dialogue).
pub fn convert_item(source: &Source, v: &Value) -> Result<Vec<Converted>, FieldError> {
    match source {
        Source::Alpaca | Source::CoigCqia => alpaca(v),
        Source::ShareGpt => sharegpt(v),
        Source::Mutual => mutual(v),
        Source::CrossWoz => crosswoz(v),
        Source::PkuSafeRlhf => pku(v),
        Source::CValues => Ok(vec![pair(
            string(v, "prompt")?,
            None,
            string(v, "pos_resp")?,
            string(v, "neg_resp")?,
        )]),
        Source::HuoziRlhf => Ok(vec![pair(
            string(v, "prompt")?,
            None,
            string(v, "chosen")?,
            string(v, "rejected")?,
        )]),
        Source::Hc3 => hc3(v),
        Source::Fields(map) => fields(v, map),
    }
}

/// Why a record was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dropped {
    /// A message, the chosen or the rejected reply is empty (or a pair's replies are equal).
    Empty,
    /// The same messages (whitespace aside) as an earlier record.
    Duplicate,
    /// More tokens than `max_tokens`.
    TooLong,
}

impl Dropped {
    pub fn name(self) -> &'static str {
        match self {
            Dropped::Empty => "empty",
            Dropped::Duplicate => "duplicate",
            Dropped::TooLong => "too long",
        }
    }
}

/// What a conversion read, wrote and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvertReport {
    pub items: usize,
    pub records: usize,
    pub written: usize,
    /// Per reason: how many, and where the first one came from (`file: line N`).
    pub dropped: BTreeMap<Dropped, (usize, String)>,
}

/// Token limit for [`convert`]: records whose texts together exceed `max` tokens by `count`
/// are dropped.
pub struct LengthFilter<'a> {
    pub max: usize,
    pub count: &'a dyn Fn(&str) -> usize,
}

/// Convert `inputs` (files or directories, all in `source`'s layout) into `out` (JSONL,
/// written atomically).
pub fn convert(
    source: &Source,
    inputs: &[PathBuf],
    out: &Path,
    limit: Option<&LengthFilter>,
) -> Result<ConvertReport, DataError> {
    let mut report = ConvertReport::default();
    let mut seen: HashSet<[u8; 16]> = HashSet::new();
    let mut text = String::new();
    // Directories (MuTual ships one file per question) are walked in name order.
    let (files, _ignored) = crate::data::sources::list_inputs(inputs)?;
    for path in &files {
        for (location, item) in read_items(path)? {
            report.items += 1;
            let records = convert_item(source, &item).map_err(|e| {
                DataError::format(
                    path,
                    format!("{location}: field `{}`: {}", e.field, e.message),
                )
            })?;
            for record in records {
                report.records += 1;
                let drop = why_dropped(&record, &mut seen, limit);
                if let Some(reason) = drop {
                    let entry = report
                        .dropped
                        .entry(reason)
                        .or_insert_with(|| (0, format!("{}: {location}", path.display())));
                    entry.0 += 1;
                    continue;
                }
                text.push_str(&record.to_json().to_string());
                text.push('\n');
                report.written += 1;
            }
        }
    }
    llama_spec::atomic::write_atomic(out, text.as_bytes()).map_err(DataError::io(out))?;
    Ok(report)
}

fn why_dropped(
    record: &Converted,
    seen: &mut HashSet<[u8; 16]>,
    limit: Option<&LengthFilter>,
) -> Option<Dropped> {
    let texts = record.texts();
    let equal_replies = matches!(record, Converted::Pair { chosen, rejected, .. } if chosen.trim() == rejected.trim());
    if texts.iter().any(|t| t.trim().is_empty()) || equal_replies {
        return Some(Dropped::Empty);
    }
    if let Some(l) = limit {
        if texts.iter().map(|t| (l.count)(t)).sum::<usize>() > l.max {
            return Some(Dropped::TooLong);
        }
    }
    let mut h = Sha256::new();
    let roles: Vec<&str> = match record {
        Converted::Sft(m) => m.iter().map(|m| m.role).collect(),
        Converted::Pair { prompt, .. } => prompt
            .iter()
            .map(|m| m.role)
            .chain(["chosen", "rejected"])
            .collect(),
    };
    for (role, t) in roles.iter().zip(&texts) {
        h.update(role.as_bytes());
        h.update([0]);
        h.update(
            t.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .as_bytes(),
        );
        h.update([1]);
    }
    let key: [u8; 16] = h.finalize()[..16].try_into().unwrap_or_default();
    (!seen.insert(key)).then_some(Dropped::Duplicate)
}
