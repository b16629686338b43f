//! Public SFT and preference data sets in their published layouts, converted to the JSONL that
//! `sft` and `dpo` read (`{"messages": [...]}` and `{"prompt": [...], "chosen", "rejected"}`),
//! with exact duplicates, empty and over-long records dropped and counted; and several
//! converted files mixed by weight into one, reproducibly.
//!
//! A record that does not have the fields its format requires is an error naming the file,
//! the line and the field: a wrong `--from` or a damaged download should stop the conversion,
//! not thin it out silently.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{splitmix64, DataError, Permutation};

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

/// Where an item sits in its file, for messages: `line N` (JSONL, JSON arrays and objects) or
/// `row N` (Parquet).
pub type Location = String;

/// The items of one file: JSONL lines; a JSON array's elements or a JSON object's values
/// (CrossWOZ); a JSON file holding one object (MuTual); Parquet rows. `.gz` is read through
/// gzip.
pub fn read_items(path: &Path) -> Result<Vec<(Location, Value)>, DataError> {
    let name = path.to_string_lossy().to_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".parquet") {
        return read_parquet(path);
    }
    let bytes = std::fs::read(path).map_err(DataError::io(path))?;
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&bytes[..]), &mut out)
            .map_err(DataError::io(path))?;
        out
    } else {
        bytes
    };
    let text = String::from_utf8(bytes)
        .map_err(|e| DataError::format(path, format!("not UTF-8 ({e})")))?;
    if name.ends_with(".jsonl") {
        let mut items = Vec::new();
        for (k, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v = serde_json::from_str(line)
                .map_err(|e| DataError::format(path, format!("line {}: not JSON ({e})", k + 1)))?;
            items.push((format!("line {}", k + 1), v));
        }
        return Ok(items);
    }
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| DataError::format(path, format!("line {}: not JSON ({e})", e.line())))?;
    let starts = top_level_starts(&text);
    Ok(match v {
        Value::Array(a) => a
            .into_iter()
            .enumerate()
            .map(|(k, v)| {
                let line = starts.get(k).map_or(1, |s| s.0);
                (format!("line {line}"), v)
            })
            .collect(),
        // A dialogue map (CrossWOZ: id -> dialogue), in file order, unless the object is
        // itself one record (a value that is not an object).
        Value::Object(o) if !o.is_empty() && o.values().all(Value::is_object) => {
            let line_of: BTreeMap<&str, usize> = starts
                .iter()
                .filter_map(|(line, key)| key.as_deref().map(|k| (k, *line)))
                .collect();
            let mut items: Vec<(usize, String, Value)> = o
                .into_iter()
                .map(|(key, v)| (line_of.get(key.as_str()).copied().unwrap_or(1), key, v))
                .collect();
            items.sort_by_key(|(line, _, _)| *line);
            items
                .into_iter()
                .map(|(line, key, v)| (format!("line {line} ({key:?})"), v))
                .collect()
        }
        v => vec![("line 1".to_string(), v)],
    })
}

/// The 1-based line where each element of the top-level array, or each key of the top-level
/// object (with the key), starts.
fn top_level_starts(text: &str) -> Vec<(usize, Option<String>)> {
    let (mut depth, mut line) = (0usize, 1usize);
    let (mut in_string, mut escaped, mut expecting) = (false, false, false);
    let mut object = false;
    let mut key: Option<String> = None;
    let mut starts: Vec<(usize, Option<String>)> = Vec::new();
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    in_string = false;
                    if let Some(k) = key.take() {
                        if let Some(last) = starts.last_mut() {
                            *last = (last.0, Some(k));
                        }
                    }
                }
                _ => {}
            }
            if let Some(k) = key.as_mut().filter(|_| in_string) {
                k.push(c);
            }
            continue;
        }
        if depth == 1 && expecting && !c.is_whitespace() && c != ']' && c != '}' {
            starts.push((line, None));
            expecting = false;
            if object && c == '"' {
                key = Some(String::new());
            }
        }
        match c {
            '"' => in_string = true,
            '[' | '{' => {
                depth += 1;
                if depth == 1 {
                    object = c == '{';
                    expecting = true;
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 1 => expecting = true,
            _ => {}
        }
    }
    starts
}

fn read_parquet(path: &Path) -> Result<Vec<(Location, Value)>, DataError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let bad = |e: parquet::errors::ParquetError| DataError::format(path, format!("parquet: {e}"));
    let file = std::fs::File::open(path).map_err(DataError::io(path))?;
    let reader = SerializedFileReader::new(file).map_err(bad)?;
    let mut items = Vec::new();
    for (k, row) in reader.get_row_iter(None).map_err(bad)?.enumerate() {
        let row = row.map_err(bad)?;
        let object: serde_json::Map<String, Value> = row
            .get_column_iter()
            .map(|(name, field)| (name.clone(), field_json(field)))
            .collect();
        items.push((format!("row {}", k + 1), Value::Object(object)));
    }
    Ok(items)
}

fn field_json(f: &parquet::record::Field) -> Value {
    use parquet::record::Field;
    match f {
        Field::Null => Value::Null,
        Field::Bool(b) => json!(b),
        Field::Byte(x) => json!(x),
        Field::Short(x) => json!(x),
        Field::Int(x) => json!(x),
        Field::Long(x) => json!(x),
        Field::UByte(x) => json!(x),
        Field::UShort(x) => json!(x),
        Field::UInt(x) => json!(x),
        Field::ULong(x) => json!(x),
        Field::Float(x) => json!(x),
        Field::Double(x) => json!(x),
        Field::Str(s) => json!(s),
        Field::Bytes(b) => json!(String::from_utf8_lossy(b.data())),
        Field::Group(row) => Value::Object(
            row.get_column_iter()
                .map(|(n, f)| (n.clone(), field_json(f)))
                .collect(),
        ),
        Field::ListInternal(list) => Value::Array(list.elements().iter().map(field_json).collect()),
        Field::MapInternal(map) => Value::Array(
            map.entries()
                .iter()
                .map(|(k, v)| json!([field_json(k), field_json(v)]))
                .collect(),
        ),
        other => json!(other.to_string()),
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
    let (files, _ignored) = super::sources::list_inputs(inputs)?;
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

/// One input of [`mix`]: a converted JSONL file and its share of the output.
#[derive(Debug, Clone, PartialEq)]
pub struct MixInput {
    pub path: PathBuf,
    pub weight: f64,
}

/// What [`mix`] took from each input.
#[derive(Debug, Clone, PartialEq)]
pub struct MixReport {
    /// Per input: lines available, lines taken.
    pub taken: Vec<(usize, usize)>,
    pub total: usize,
}

/// Lines of `inputs` in proportion to their weights, shuffled together, into `out`. `total`
/// lines in all (default: as many as the scarcest input allows without repeating a line).
/// An input asked for more lines than it has repeats whole passes over it only with
/// `repeat`. The same inputs and `seed` give the same file.
pub fn mix(
    inputs: &[MixInput],
    out: &Path,
    total: Option<usize>,
    repeat: bool,
    seed: u64,
) -> Result<MixReport, DataError> {
    if inputs.is_empty()
        || inputs
            .iter()
            .any(|i| !(i.weight > 0.0 && i.weight.is_finite()))
    {
        return Err(DataError::Mixture(
            "mix: give at least one input, each with a positive weight".into(),
        ));
    }
    let mut lines = Vec::with_capacity(inputs.len());
    for i in inputs {
        let text = std::fs::read_to_string(&i.path).map_err(DataError::io(&i.path))?;
        let l: Vec<String> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        if l.is_empty() {
            return Err(DataError::format(&i.path, "no lines to mix"));
        }
        lines.push(l);
    }
    let sum: f64 = inputs.iter().map(|i| i.weight).sum();
    let shares: Vec<f64> = inputs.iter().map(|i| i.weight / sum).collect();
    let total = total.unwrap_or_else(|| {
        lines
            .iter()
            .zip(&shares)
            .map(|(l, s)| (l.len() as f64 / s).floor() as usize)
            .min()
            .unwrap_or(0)
    });
    // Largest remainders: the counts sum to `total` exactly.
    let exact: Vec<f64> = shares.iter().map(|s| s * total as f64).collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by(|&a, &b| {
        (exact[b] - exact[b].floor())
            .total_cmp(&(exact[a] - exact[a].floor()))
            .then(a.cmp(&b))
    });
    let short = total - counts.iter().sum::<usize>();
    for &k in order.iter().take(short) {
        counts[k] += 1;
    }
    let mut picked: Vec<&str> = Vec::with_capacity(total);
    for (k, (l, &want)) in lines.iter().zip(&counts).enumerate() {
        if want > l.len() && !repeat {
            return Err(DataError::format(
                &inputs[k].path,
                format!(
                    "{want} lines wanted for its weight, {} there: lower --total, or pass --repeat",
                    l.len()
                ),
            ));
        }
        for j in 0..want {
            let pass = (j / l.len()) as u64;
            let perm = Permutation::new(
                l.len() as u64,
                splitmix64(seed ^ splitmix64(k as u64) ^ splitmix64(pass.wrapping_add(1))),
            );
            picked.push(&l[perm.apply((j % l.len()) as u64) as usize]);
        }
    }
    let perm = Permutation::new(picked.len() as u64, splitmix64(seed));
    let mut text = String::new();
    for j in 0..picked.len() {
        text.push_str(picked[perm.apply(j as u64) as usize]);
        text.push('\n');
    }
    llama_spec::atomic::write_atomic(out, text.as_bytes()).map_err(DataError::io(out))?;
    Ok(MixReport {
        taken: lines.iter().map(Vec::len).zip(counts).collect(),
        total,
    })
}
