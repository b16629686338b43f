//! BIG-Bench Hard (Suzgun et al., 2022): 27 reasoning tasks of BIG-bench, answer-only, k-shot
//! (the paper: 3), exact match after answer extraction, averaged over tasks.
//!
//! Data (under the data dir), per task, the first that exists:
//! - `bbh/{task}.json`: BBH's own release (`{"examples": [{"input", "target"}]}`, inputs with
//!   their `Options:` already written);
//! - `bbh/benchmark_tasks/{source}/task.json`: BIG-bench's JSON task (`description`,
//!   `examples` with `target` or `target_scores`), `source` as in [`TASKS`]. A multiple-choice
//!   example becomes BBH's layout: two one-word options (Yes/No, valid/invalid...) are listed
//!   as `- option` lines and answered by the word; others as `(A) option` lines, answered `(A)`.
//!
//! Shots: the first k examples of each task (in file order), which are then not scored.
//! Prompt: `{description}\n\n` (BIG-bench files only), then `Q: {input}\nA: {target}\n\n` per
//! shot, then `Q: {input}\nA:`; greedy to the first newline, 64 tokens at most. Items are
//! interleaved across tasks (the first of every task, then the second...), so `--limit n`
//! samples every task.
//!
//! Scoring ([`extract`], [`is_correct`]): the reply's first non-empty line; for a lettered
//! target the first `(X)` in it, or a bare leading letter; otherwise the line without a final
//! period. Equal to any target ignoring case and runs of whitespace. `acc` is the mean of the
//! per-task accuracies (`acc/{task}`), as BBH reports its average.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::json;

use super::io::read_text;
use super::GenItem;
use crate::error::{EvalError, Result};

/// BBH's tasks and the BIG-bench task (and subtask) each was drawn from.
pub const TASKS: &[(&str, &str)] = &[
    ("boolean_expressions", "boolean_expressions"),
    ("causal_judgement", "causal_judgment"),
    ("date_understanding", "date_understanding"),
    ("disambiguation_qa", "disambiguation_qa"),
    ("dyck_languages", "dyck_languages"),
    ("formal_fallacies", "formal_fallacies_syllogisms_negation"),
    ("geometric_shapes", "geometric_shapes"),
    ("hyperbaton", "hyperbaton"),
    (
        "logical_deduction_five_objects",
        "logical_deduction/five_objects",
    ),
    (
        "logical_deduction_seven_objects",
        "logical_deduction/seven_objects",
    ),
    (
        "logical_deduction_three_objects",
        "logical_deduction/three_objects",
    ),
    ("movie_recommendation", "movie_recommendation"),
    ("multistep_arithmetic_two", "multistep_arithmetic"),
    ("navigate", "navigate"),
    ("object_counting", "object_counting"),
    ("penguins_in_a_table", "penguins_in_a_table"),
    (
        "reasoning_about_colored_objects",
        "reasoning_about_colored_objects",
    ),
    ("ruin_names", "ruin_names"),
    (
        "salient_translation_error_detection",
        "salient_translation_error_detection",
    ),
    ("snarks", "snarks"),
    ("sports_understanding", "sports_understanding"),
    ("temporal_sequences", "temporal_sequences"),
    (
        "tracking_shuffled_objects_five_objects",
        "tracking_shuffled_objects/five_objects",
    ),
    (
        "tracking_shuffled_objects_seven_objects",
        "tracking_shuffled_objects/seven_objects",
    ),
    (
        "tracking_shuffled_objects_three_objects",
        "tracking_shuffled_objects/three_objects",
    ),
    ("web_of_lies", "web_of_lies"),
    ("word_sorting", "word_sorting"),
];

/// The shots the paper gives.
pub const DEFAULT_SHOTS: usize = 3;

/// One example: its question and every answer that counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub input: String,
    pub targets: Vec<String>,
}

/// A task as read from either format.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub name: String,
    pub description: Option<String>,
    pub examples: Vec<Example>,
}

#[derive(Deserialize)]
struct RawExample {
    input: Option<String>,
    target: Option<StringOrList>,
    target_scores: Option<OrderedScores>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

/// `target_scores` in file order (the option letters follow it).
struct OrderedScores(Vec<(String, f64)>);

impl<'de> Deserialize<'de> for OrderedScores {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedScores;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of option -> score")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some((k, s)) = m.next_entry::<String, f64>()? {
                    v.push((k, s));
                }
                Ok(OrderedScores(v))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Deserialize)]
struct RawTask {
    description: Option<String>,
    examples: Vec<RawExample>,
}

/// BBH's layout of a multiple-choice example: (input with its options, target, the first
/// option of the highest score). `options` is not empty.
pub fn multiple_choice(input: &str, options: &[(String, f64)]) -> (String, String) {
    let best = options
        .iter()
        .enumerate()
        .max_by(|a, b| a.1 .1.total_cmp(&b.1 .1).then(b.0.cmp(&a.0)))
        .map_or(0, |(i, _)| i);
    let words = options.len() == 2 && options.iter().all(|(o, _)| !o.trim().contains(' '));
    let mut s = format!("{}\nOptions:", input.trim_end());
    if words {
        for (o, _) in options {
            s.push_str(&format!("\n- {}", o.trim()));
        }
        return (s, options[best].0.trim().to_string());
    }
    for (i, (o, _)) in options.iter().enumerate() {
        s.push_str(&format!("\n({}) {}", letter(i), o.trim()));
    }
    (s, format!("({})", letter(best)))
}

fn letter(i: usize) -> char {
    char::from(b'A' + (i % 26) as u8)
}

/// Read one task: `bbh/{name}.json` (BBH's release) or BIG-bench's `task.json`.
pub fn read_task(path: &Path, name: &str) -> Result<Task> {
    let raw: RawTask = serde_json::from_str(&read_text(path)?).map_err(|e| {
        EvalError::data(
            path,
            format!("not a BBH or BIG-bench task file (`examples` with `input` and `target`/`target_scores`): {e}"),
        )
    })?;
    let mut examples = Vec::with_capacity(raw.examples.len());
    for (i, ex) in raw.examples.into_iter().enumerate() {
        let bad = |what: &str| EvalError::data(path, format!("example {}: {what}", i + 1));
        let input = ex.input.ok_or_else(|| bad("no `input`"))?;
        let example = match (ex.target, ex.target_scores) {
            (_, Some(OrderedScores(opts))) if !opts.is_empty() => {
                let (input, target) = multiple_choice(&input, &opts);
                Example {
                    input,
                    targets: vec![target],
                }
            }
            (Some(StringOrList::One(t)), _) => Example {
                input,
                targets: vec![t],
            },
            (Some(StringOrList::Many(ts)), _) if !ts.is_empty() => Example { input, targets: ts },
            _ => return Err(bad("no `target` or `target_scores`")),
        };
        examples.push(example);
    }
    Ok(Task {
        name: name.to_string(),
        description: raw.description.filter(|d| !d.trim().is_empty()),
        examples,
    })
}

/// Where a task's file is under `dir/bbh`, the release's first.
fn task_path(dir: &Path, name: &str, source: &str) -> Option<PathBuf> {
    [
        dir.join(format!("bbh/{name}.json")),
        dir.join(format!("bbh/benchmark_tasks/{source}/task.json")),
    ]
    .into_iter()
    .find(|p| p.is_file())
}

/// The prompt for `input` after `shots` (and the task's description, when it has one).
pub fn prompt(task: &Task, shots: &[Example], input: &str) -> String {
    let mut s = String::new();
    if let Some(d) = &task.description {
        s.push_str(d.trim());
        s.push_str("\n\n");
    }
    for ex in shots {
        s.push_str(&format!(
            "Q: {}\nA: {}\n\n",
            ex.input.trim(),
            ex.targets[0].trim()
        ));
    }
    s.push_str(&format!("Q: {}\nA:", input.trim()));
    s
}

/// Every BBH task found under `dir/bbh`, `shots` examples each as shots; items interleaved.
pub fn load(dir: &Path, shots: usize) -> Result<Vec<GenItem>> {
    let mut per_task = Vec::new();
    for (name, source) in TASKS {
        let Some(path) = task_path(dir, name, source) else {
            continue;
        };
        let task = read_task(&path, name)?;
        if task.examples.len() <= shots {
            return Err(EvalError::data(
                &path,
                format!(
                    "{} examples: too few for {shots} shots and one to score",
                    task.examples.len()
                ),
            ));
        }
        let (head, rest) = task.examples.split_at(shots);
        let items: Vec<GenItem> = rest
            .iter()
            .enumerate()
            .map(|(i, ex)| GenItem {
                id: format!("bbh/{name}/{}", i + shots),
                prompt: prompt(&task, head, &ex.input),
                chat: false,
                max_tokens: 64,
                stop: vec!["\n".into()],
                refs: ex.targets.clone(),
                extra: Some(json!(name)),
            })
            .collect();
        per_task.push(items);
    }
    if per_task.is_empty() {
        return Err(EvalError::data(
            dir.join("bbh"),
            "no BBH task: expected {task}.json (BBH's release) or benchmark_tasks/{source}/task.json (BIG-bench)",
        ));
    }
    let longest = per_task.iter().map(Vec::len).max().unwrap_or(0);
    let mut iters: Vec<_> = per_task.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::new();
    for _ in 0..longest {
        out.extend(iters.iter_mut().filter_map(Iterator::next));
    }
    Ok(out)
}

fn normalize(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

fn is_letter_target(t: &str) -> bool {
    let b = t.trim().as_bytes();
    b.len() == 3 && b[0] == b'(' && b[1].is_ascii_uppercase() && b[2] == b')'
}

/// The answer read from a reply, in the form of `target` (see the module docs).
pub fn extract(output: &str, target: &str) -> String {
    let line = output
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if is_letter_target(target) {
        let b = line.as_bytes();
        if let Some(i) = (0..b.len().saturating_sub(2))
            .find(|&i| b[i] == b'(' && b[i + 1].is_ascii_uppercase() && b[i + 2] == b')')
        {
            return line[i..i + 3].to_string();
        }
        if let Some(&c) = b.first() {
            let next = b.get(1).copied();
            if c.is_ascii_uppercase() && next.is_none_or(|n| !n.is_ascii_alphanumeric()) {
                return format!("({})", char::from(c));
            }
        }
        return line.to_string();
    }
    line.strip_suffix('.').unwrap_or(line).trim().to_string()
}

/// Whether `output` answers one of `targets`.
pub fn is_correct(output: &str, targets: &[String]) -> bool {
    let Some(first) = targets.first() else {
        return false;
    };
    let got = normalize(&extract(output, first));
    targets.iter().any(|t| normalize(t) == got)
}

/// `acc` (the mean over tasks) and `acc/{task}`, 0-100.
pub fn score(items: &[GenItem], outputs: &[String]) -> BTreeMap<String, f64> {
    let mut per: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (it, o) in items.iter().zip(outputs) {
        let task = it.extra.as_ref().and_then(|v| v.as_str()).unwrap_or("bbh");
        let e = per.entry(task.to_string()).or_default();
        e.0 += usize::from(is_correct(o, &it.refs));
        e.1 += 1;
    }
    let mut m = BTreeMap::new();
    let mut sum = 0.0;
    for (task, (right, n)) in &per {
        let acc = 100.0 * *right as f64 / (*n).max(1) as f64;
        sum += acc;
        m.insert(format!("acc/{task}"), acc);
    }
    m.insert("acc".into(), sum / per.len().max(1) as f64);
    m.insert("tasks".into(), per.len() as f64);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn letters_are_read_from_the_first_parenthesis_or_a_leading_letter() {
        assert_eq!(extract(" (B) the second\n(C)", "(A)"), "(B)");
        assert_eq!(extract("C. cats", "(A)"), "(C)");
        assert_eq!(extract("The answer is (D).", "(A)"), "(D)");
        assert_eq!(extract("Dogs", "(A)"), "Dogs");
        assert!(is_correct("\n(E)", &s(&["(E)"])));
        assert!(!is_correct("(E)", &s(&["(F)"])));
    }

    #[test]
    fn free_answers_ignore_case_spacing_and_a_final_period() {
        assert!(is_correct(" Yes.", &s(&["Yes"])));
        assert!(is_correct(
            "apple  banana cherry",
            &s(&["apple banana cherry"])
        ));
        assert!(is_correct("24", &s(&["twenty-four", "24"])));
        assert!(!is_correct("-24", &s(&["24"])));
        assert!(!is_correct("", &s(&["24"])));
    }

    #[test]
    fn two_word_options_are_bulleted_and_longer_ones_lettered() {
        let yn = vec![("Yes".to_string(), 0.0), ("No".to_string(), 1.0)];
        let (input, target) = multiple_choice("Is it?", &yn);
        assert_eq!(input, "Is it?\nOptions:\n- Yes\n- No");
        assert_eq!(target, "No");
        let abc = vec![
            ("red ball".to_string(), 0.0),
            ("blue".to_string(), 0.0),
            ("green".to_string(), 1.0),
        ];
        let (input, target) = multiple_choice("Which?", &abc);
        assert_eq!(input, "Which?\nOptions:\n(A) red ball\n(B) blue\n(C) green");
        assert_eq!(target, "(C)");
    }
}
