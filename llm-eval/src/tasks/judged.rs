//! Tasks a second model judges: a Turing test in the style of BotChat (Duan et al., 2023) and
//! BelleEval-style answers scored against a reference. Both sides talk through
//! `LanguageModel::chat`, so either may be a GGUF file, a checkpoint or an HTTP endpoint; with
//! no judge given, the model judges itself.
//!
//! `turing`: `turing/dialogues.jsonl` lines `{"dialogue": [utterances], "lang"?, "id"?}` (real
//! human dialogues, e.g. MuTual's, speakers alternating A, B). The first [`SEED_LINES`] lines
//! are kept; the model writes the next ones one at a time (up to [`TURING_TURNS`], no more
//! than the real dialogue has), each as a chat reply: the speaker it writes for is the
//! assistant, the other the user. The judge is asked, blind,
//! whether any line was written by an AI, once for the model's dialogue and once for the real
//! one cut to the same length. `human_rate`: share of the model's dialogues judged human;
//! `human_rate_real`: the same for the real ones (the judge's own baseline); `format_errors`:
//! verdicts naming neither answer (counted as not human).
//!
//! `belle`: BELLE's eval set (`belle/eval_set.json`, JSON lines or a JSON list of
//! `{"question", "std_answer", "class"}`). The model answers each question (512 tokens); the
//! judge scores the answer 0-1 against the reference with a fixed rubric ([`rubric`]).
//! `score`: mean x 100, also per class (`score/{class}`); `format_errors`: replies with no
//! score in 0-1 (scored 0).
//!
//! A text with any CJK character is asked in Chinese, any other in English.

use std::collections::BTreeMap;
use std::path::Path;

use llama_spec::chat::Message;
use serde_json::{json, Value};

use super::io::{parse_jsonl, read_jsonl, read_text};
use crate::backend::LanguageModel;
use crate::error::{EvalError, Result};
use crate::metrics::text::has_cjk;

/// Real lines kept before the model takes over.
pub const SEED_LINES: usize = 2;
/// Lines the model writes (at most; no more than the real dialogue continues).
pub const TURING_TURNS: usize = 4;

#[derive(Debug, Clone, PartialEq)]
pub enum JudgedItem {
    /// A real dialogue, cut to `SEED_LINES + TURING_TURNS` lines at most.
    Turing {
        id: String,
        zh: bool,
        dialogue: Vec<String>,
    },
    /// A question with its reference answer.
    Answer {
        id: String,
        zh: bool,
        question: String,
        reference: String,
        category: String,
    },
}

pub fn turing(dir: &Path) -> Result<Vec<JudgedItem>> {
    let path = dir.join("turing/dialogues.jsonl");
    read_jsonl(&path)?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let lines: Vec<String> = v["dialogue"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|u| u.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    EvalError::data(&path, format!("record {}: `dialogue` must be a list of strings", i + 1))
                })?;
            if lines.len() <= SEED_LINES {
                return Err(EvalError::data(
                    &path,
                    format!(
                        "record {}: {} lines; a dialogue needs more than the {SEED_LINES} seed lines",
                        i + 1,
                        lines.len()
                    ),
                ));
            }
            let zh = match v["lang"].as_str() {
                Some(l) => l == "zh",
                None => lines.iter().any(|l| has_cjk(l)),
            };
            let id = v["id"].as_str().map_or_else(|| format!("turing/{i}"), str::to_string);
            let mut dialogue = lines;
            dialogue.truncate(SEED_LINES + TURING_TURNS);
            Ok(JudgedItem::Turing { id, zh, dialogue })
        })
        .collect()
}

pub fn belle(dir: &Path) -> Result<Vec<JudgedItem>> {
    let path = dir.join("belle/eval_set.json");
    let text = read_text(&path)?;
    let records: Vec<Value> = if text.trim_start().starts_with('[') {
        serde_json::from_str(&text)
            .map_err(|e| EvalError::data(&path, format!("invalid JSON: {e}")))?
    } else {
        parse_jsonl(&text, &path)?
    };
    records
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let f = |k: &str| {
                v[k].as_str().map(str::to_string).ok_or_else(|| {
                    EvalError::data(&path, format!("record {}: no string field {k:?}", i + 1))
                })
            };
            let question = f("question")?;
            Ok(JudgedItem::Answer {
                id: v["id"]
                    .as_str()
                    .map_or_else(|| format!("belle/{i}"), str::to_string),
                zh: has_cjk(&question),
                reference: f("std_answer")?,
                category: v["class"].as_str().unwrap_or("all").to_string(),
                question,
            })
        })
        .collect()
}

fn speaker(i: usize) -> &'static str {
    if i.is_multiple_of(2) {
        "A"
    } else {
        "B"
    }
}

/// `A: ...\nB: ...` lines.
pub fn transcript(lines: &[String]) -> String {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("{}: {l}", speaker(i)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The request for the next line of `so_far`, as a chat: the speaker to write is the
/// assistant, the other one the user, so that a chat model answers with that speaker's line.
pub fn next_line_messages(so_far: &[String], zh: bool) -> Vec<Message> {
    let who = speaker(so_far.len());
    let mut msgs = vec![Message::system(if zh {
        format!("你是一段日常对话中的 {who}，正在和另一个人聊天。请只写出 {who} 的下一句话：一句简短、自然的话，不要写说话人的名字，也不要解释。")
    } else {
        format!("You are {who} in a casual conversation with another person. Write only {who}'s next line: one short, natural utterance, with no speaker name and no explanation.")
    })];
    for (i, line) in so_far.iter().enumerate() {
        msgs.push(if speaker(i) == who {
            Message::assistant(line.clone())
        } else {
            Message::user(line.clone())
        });
    }
    msgs
}

/// A written line cleaned: its first non-empty line without a leading `A:`/`B：` label.
pub fn clean_line(reply: &str) -> String {
    let line = reply
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    for label in ["A:", "B:", "A：", "B："] {
        if let Some(rest) = line.strip_prefix(label) {
            return rest.trim().to_string();
        }
    }
    line.to_string()
}

/// The judge's question about a whole dialogue.
pub fn verdict_messages(lines: &[String], zh: bool) -> Vec<Message> {
    let t = transcript(lines);
    vec![Message::user(if zh {
        format!("下面是 A 和 B 之间的一段对话。\n\n{t}\n\n这段对话中是否有任何一句是由 AI 语言模型而不是真人写的？请只回答一个字：是 或 否。")
    } else {
        format!("Here is a conversation between A and B.\n\n{t}\n\nWas any line of this conversation written by an AI language model rather than by a person? Answer with one word: Yes or No.")
    })]
}

/// `Some(true)` when the judge says the dialogue is human (No / 否 / 不是), `Some(false)` when it
/// says AI (Yes / 是), `None` when it says neither; the earliest answer counts.
pub fn judged_human(reply: &str) -> Option<bool> {
    let lower = reply.to_lowercase();
    let mut found: Vec<(usize, bool)> = Vec::new();
    let words = |w: &str, human: bool, found: &mut Vec<(usize, bool)>| {
        for (i, _) in lower.match_indices(w) {
            let before = lower[..i].chars().next_back();
            let after = lower[i + w.len()..].chars().next();
            if !before.is_some_and(char::is_alphanumeric)
                && !after.is_some_and(char::is_alphanumeric)
            {
                found.push((i, human));
            }
        }
    };
    words("yes", false, &mut found);
    words("no", true, &mut found);
    for (i, _) in lower.match_indices('否') {
        found.push((i, true));
    }
    for (i, _) in lower.match_indices("不是") {
        found.push((i, true));
    }
    for (i, _) in lower.match_indices('是') {
        if !lower[..i].ends_with('不') {
            found.push((i, false));
        }
    }
    found.into_iter().min_by_key(|f| f.0).map(|f| f.1)
}

/// The judge's rubric for an answer against its reference.
pub fn rubric(question: &str, reference: &str, answer: &str, zh: bool) -> Vec<Message> {
    vec![Message::user(if zh {
        format!("你是一名严格的评分员。请对照参考答案，给下面的回答打一个 0 到 1 之间的分数：1 表示正确、完整且有帮助，0.5 表示部分正确，0 表示错误、无关或没有回答。\n\n问题：{question}\n\n参考答案：{reference}\n\n待评回答：{answer}\n\n只输出分数，格式为“分数：x”。")
    } else {
        format!("You are a strict grader. Compare the answer below with the reference answer and give it a score between 0 and 1: 1 means correct, complete and helpful, 0.5 partly correct, 0 wrong, off-topic or missing.\n\nQuestion: {question}\n\nReference answer: {reference}\n\nAnswer to grade: {answer}\n\nOutput only the score, as \"Score: x\".")
    })]
}

/// The score in a judge's reply: the first number after `score`/`分数`, else the first
/// number; `None` unless it lies in 0-1.
pub fn parse_score(reply: &str) -> Option<f64> {
    let lower = reply.to_lowercase();
    let from = ["score", "分数"]
        .iter()
        .filter_map(|k| lower.find(k).map(|i| i + k.len()))
        .min()
        .unwrap_or(0);
    let tail = &lower[from..];
    let start = tail.find(|c: char| c.is_ascii_digit())?;
    let num: String = tail[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let v: f64 = num.trim_end_matches('.').parse().ok()?;
    (0.0..=1.0).contains(&v).then_some(v)
}

type Scored = (BTreeMap<String, f64>, Vec<Value>);

/// Run judged items: `model` answers, `judge` (or `model` itself) judges.
pub fn run(
    model: &mut dyn LanguageModel,
    judge: Option<&mut (dyn LanguageModel + '_)>,
    items: &[JudgedItem],
    log_samples: bool,
    progress: &dyn Fn(),
) -> Result<Scored> {
    // The model's side first, so that it may judge itself afterwards.
    let mut written: Vec<Vec<String>> = Vec::with_capacity(items.len());
    for it in items {
        match it {
            JudgedItem::Turing { zh, dialogue, .. } => {
                let mut lines = dialogue[..SEED_LINES].to_vec();
                while lines.len() < dialogue.len() {
                    let reply = model.chat(&next_line_messages(&lines, *zh), 48, &[])?;
                    lines.push(clean_line(&reply));
                }
                written.push(lines);
            }
            JudgedItem::Answer { question, .. } => {
                written.push(vec![model.chat(
                    &[Message::user(question.clone())],
                    512,
                    &[],
                )?]);
            }
        }
        progress();
    }
    let judge: &mut dyn LanguageModel = match judge {
        Some(j) => j,
        None => model,
    };
    let (mut human, mut human_real, mut turing_n, mut errors) = (0usize, 0usize, 0usize, 0usize);
    let mut by_class: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    let mut samples = Vec::new();
    for (it, w) in items.iter().zip(&written) {
        match it {
            JudgedItem::Turing { id, zh, dialogue } => {
                let v_model = judge.chat(&verdict_messages(w, *zh), 8, &[])?;
                let v_real = judge.chat(&verdict_messages(dialogue, *zh), 8, &[])?;
                let (hm, hr) = (judged_human(&v_model), judged_human(&v_real));
                turing_n += 1;
                human += usize::from(hm == Some(true));
                human_real += usize::from(hr == Some(true));
                errors += usize::from(hm.is_none()) + usize::from(hr.is_none());
                if log_samples {
                    samples.push(json!({"id": id, "dialogue": w, "verdict": v_model, "real_verdict": v_real, "human": hm}));
                }
            }
            JudgedItem::Answer {
                id,
                zh,
                question,
                reference,
                category,
            } => {
                let reply = judge.chat(&rubric(question, reference, &w[0], *zh), 16, &[])?;
                let score = parse_score(&reply);
                errors += usize::from(score.is_none());
                let e = by_class.entry(category.clone()).or_default();
                e.0 += score.unwrap_or(0.0);
                e.1 += 1;
                if log_samples {
                    samples.push(json!({"id": id, "answer": w[0], "judge": reply, "score": score}));
                }
            }
        }
    }
    let mut m = BTreeMap::new();
    if turing_n > 0 {
        let pct = |k: usize| 100.0 * k as f64 / turing_n as f64;
        m.insert("human_rate".into(), pct(human));
        m.insert("human_rate_real".into(), pct(human_real));
    }
    if !by_class.is_empty() {
        let (sum, n) = by_class
            .values()
            .fold((0.0, 0), |a, v| (a.0 + v.0, a.1 + v.1));
        m.insert("score".into(), 100.0 * sum / n.max(1) as f64);
        for (c, (s, n)) in &by_class {
            m.insert(format!("score/{c}"), 100.0 * s / (*n).max(1) as f64);
        }
    }
    m.insert("format_errors".into(), errors as f64);
    Ok((m, samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_take_the_earliest_answer_in_either_language() {
        assert_eq!(judged_human("No."), Some(true));
        assert_eq!(
            judged_human("Yes, line 3 sounds generated. No human says that."),
            Some(false)
        );
        assert_eq!(judged_human("否"), Some(true));
        assert_eq!(judged_human("不是，都是真人"), Some(true));
        assert_eq!(judged_human("是的"), Some(false));
        assert_eq!(judged_human("Nobody knows"), None);
        assert_eq!(judged_human("I cannot tell"), None);
    }

    #[test]
    fn scores_are_read_after_their_label_and_must_lie_in_0_to_1() {
        assert_eq!(parse_score("Score: 0.8"), Some(0.8));
        assert_eq!(parse_score("分数：1"), Some(1.0));
        assert_eq!(parse_score("Question 2. Score: 0.5."), Some(0.5));
        assert_eq!(parse_score("0"), Some(0.0));
        assert_eq!(parse_score("Score: 7"), None);
        assert_eq!(parse_score("excellent"), None);
    }

    #[test]
    fn written_lines_lose_their_speaker_label() {
        assert_eq!(
            clean_line("\n B: Sure, see you then.\nA: bye"),
            "Sure, see you then."
        );
        assert_eq!(clean_line("A：好的"), "好的");
        assert_eq!(
            transcript(&["hi".into(), "hello".into(), "how are you".into()]),
            "A: hi\nB: hello\nA: how are you"
        );
    }
}
