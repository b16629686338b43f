//! The benchmarks: where each reads its data (the benchmark's own public format, under
//! `--data-dir`), how it builds prompts, and how it is scored. Every prompt format is written
//! out in the task's loader; the README's table lists them.
//!
//! | task | data (under the data dir) | kind | shots | primary metric |
//! | --- | --- | --- | --- | --- |
//! | `ceval` | `ceval/val/{subject}_val.csv`, shots from `ceval/dev/{subject}_dev.csv` | choice | 5 | acc |
//! | `mmlu` | `mmlu/test/{subject}_test.csv`, shots from `mmlu/dev/{subject}_dev.csv` (no header) | choice | 5 | acc |
//! | `agieval` | `agieval/{task}.jsonl` (`passage`, `question`, `options`, `label`) | choice | 0 | acc |
//! | `bbh` | `bbh/{task}.json` (BBH's release) or `bbh/benchmark_tasks/{source}/task.json` (BIG-bench) | generation | 3 or `Prompting::shots` | acc (mean over tasks; exact match) |
//! | `cluewsc` | `cluewsc/dev.json` (CLUE JSON lines) | choice | 0 | acc |
//! | `eprstmt` | `eprstmt/dev_few_all.json` (FewCLUE JSON lines) | choice | 0 | acc |
//! | `cmrc` | `cmrc/dev.json` (SQuAD format) | generation | 0 | em (and f1) |
//! | `drcd` | `drcd/dev.json` (SQuAD format) | generation | 0 | em (and f1) |
//! | `lcsts` | `lcsts/test.src.txt`, `lcsts/test.tgt.txt` (one per line) | generation | 0 | rougeL_jieba (and rougeL_char) |
//! | `wmt22-zh-en` | `wmt22/zh-en.src`, `wmt22/zh-en.ref` (`sacrebleu -t wmt22 -l zh-en --echo src`/`ref`); shots from `zh-en.dev.src`/`.ref` | generation | 0 or `Prompting::shots` | bleu (13a) |
//! | `wmt22-en-zh` | `wmt22/en-zh.src`, `wmt22/en-zh.ref`; shots from `en-zh.dev.*` | generation | 0 or `Prompting::shots` | bleu (zh) |
//! | `gsm8k` | `gsm8k/test.jsonl`, shots from `gsm8k/train.jsonl` | generation | 4 | acc (last number) |
//! | `triviaqa` | `triviaqa/dev.json` (the original `{"Data": [...]}`) | generation | 0 | em |
//! | `humaneval` | `humaneval/HumanEval.jsonl.gz` (else `assets/HumanEval.jsonl.gz`) | generation + execution | 0 | pass@1 |
//! | `cloze` | `cloze/*.jsonl` (`context`, `choices`, `gold`: generic multiple choice) | choice | 0 | acc_norm |
//! | `emotion` | `emotion/test.jsonl` (`text`, `label`), labels from `emotion/labels.tsv` | choice | 0 | acc (and macro_f1) |
//! | `emotion-gen` | the same, the label list in the prompt, the first label named | generation | 0 | acc (and macro_f1, format_errors) |
//! | `zh-fraction` | `dialogue/prompts.jsonl` (`{"prompt", "lang"?, "system"?}`), chat template | generation | 0 | zh_fraction with its 95 % interval (not averaged) |
//! | `turing` | `turing/dialogues.jsonl` (`{"dialogue": [lines]}`: real dialogues), BotChat-style | judged | 0 | human_rate (and human_rate_real, format_errors) |
//! | `belle` | `belle/eval_set.json` (BELLE's `{"question", "std_answer", "class"}`) | judged | 0 | score (0-100, per class too) |

pub mod bbh;
pub mod choice;
pub mod emotion;
pub mod generation;
pub mod humaneval;
pub mod io;
pub mod judged;

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{EvalError, Result};

/// Multiple choice by log-likelihood: `context` followed by each of `choices` (which carry
/// their own leading delimiter, e.g. " A").
#[derive(Debug, Clone)]
pub struct ChoiceItem {
    pub id: String,
    pub context: String,
    pub choices: Vec<String>,
    pub gold: usize,
}

/// Greedy generation from `prompt` (rendered with the chat template when `chat`), scored
/// against `refs`.
#[derive(Debug, Clone)]
pub struct GenItem {
    pub id: String,
    pub prompt: String,
    pub chat: bool,
    pub max_tokens: usize,
    pub stop: Vec<String>,
    pub refs: Vec<String>,
    /// Task-specific payload (HumanEval: the test program and entry point).
    pub extra: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub enum Items {
    Choice(Vec<ChoiceItem>),
    Gen(Vec<GenItem>),
    /// Written by the model, then judged (by a second model, or by itself).
    Judged(Vec<judged::JudgedItem>),
}

impl Items {
    pub fn len(&self) -> usize {
        match self {
            Self::Choice(v) => v.len(),
            Self::Gen(v) => v.len(),
            Self::Judged(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn truncate(&mut self, n: usize) {
        match self {
            Self::Choice(v) => v.truncate(n),
            Self::Gen(v) => v.truncate(n),
            Self::Judged(v) => v.truncate(n),
        }
    }
}

/// Every task, in the order of the paper's tables.
pub const TASKS: &[&str] = &[
    "ceval",
    "mmlu",
    "agieval",
    "bbh",
    "cluewsc",
    "eprstmt",
    "cmrc",
    "drcd",
    "lcsts",
    "wmt22-zh-en",
    "wmt22-en-zh",
    "gsm8k",
    "triviaqa",
    "humaneval",
    "cloze",
    "emotion",
    "emotion-gen",
    "zh-fraction",
    "turing",
    "belle",
];

/// The metric a task contributes to the average (all on a 0-100 scale); `None` for tasks that
/// are measurements, not benchmarks (`zh-fraction`).
pub fn primary_metric(task: &str) -> Option<&'static str> {
    Some(match task {
        "ceval" | "mmlu" | "agieval" | "bbh" | "cluewsc" | "eprstmt" | "gsm8k" => "acc",
        "cmrc" | "drcd" | "triviaqa" => "em",
        "lcsts" => "rougeL_jieba",
        "wmt22-zh-en" | "wmt22-en-zh" => "bleu",
        "humaneval" => "pass@1",
        "cloze" => "acc_norm",
        "emotion" | "emotion-gen" => "acc",
        "turing" => "human_rate",
        "belle" => "score",
        _ => return None,
    })
}

/// The benchmarks of the paper's Eq. 4 average (Table 3's columns, BBH included): what
/// `eq4` expands to, for the sweep's metric objective.
pub fn eq4_tasks() -> Vec<String> {
    crate::tables::PAPER_TABLES[0]
        .columns
        .iter()
        .map(|c| c.task.to_string())
        .collect()
}

/// Expand `all` and `eq4` and check names.
pub fn resolve(names: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for n in names {
        if n == "all" {
            out.extend(TASKS.iter().map(|s| s.to_string()));
        } else if n == "eq4" {
            out.extend(eq4_tasks());
        } else if TASKS.contains(&n.as_str()) {
            out.push(n.clone());
        } else {
            return Err(EvalError::UnknownTask(n.clone(), TASKS.join(", ")));
        }
    }
    out.dedup();
    Ok(out)
}

/// How a run builds its prompts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prompting {
    /// Shots for every task whose shot count is a choice (`wmt22-*`, the paper: 5; `bbh`, the
    /// paper: 3); `None`: each task's own default (`default_shots`).
    pub shots: Option<usize>,
    /// Shots for the tasks whose names start with a key (`wmt22` -> 5, `bbh` -> 3), before
    /// `shots`.
    pub shots_by_task: BTreeMap<String, usize>,
    /// Render every generation prompt through the model's chat template, as OpenCompass does
    /// for chat models (instruct checkpoints); multiple-choice tasks keep their plain form.
    pub chat: bool,
}

impl Prompting {
    /// The shots `task` gets in this run (meaningful where `takes_shots`).
    pub fn shots_for(&self, task: &str) -> usize {
        self.shots_by_task
            .iter()
            .filter(|(k, _)| task.starts_with(k.as_str()))
            .max_by_key(|(k, _)| k.len())
            .map(|(_, &n)| n)
            .or(self.shots)
            .unwrap_or_else(|| default_shots(task))
    }
}

/// Whether `task` takes a shot count (`Prompting::shots`).
pub fn takes_shots(task: &str) -> bool {
    task.starts_with("wmt22-") || task == "bbh"
}

/// The shots a task that takes a count gets when the run names none.
pub fn default_shots(task: &str) -> usize {
    if task == "bbh" {
        bbh::DEFAULT_SHOTS
    } else {
        0
    }
}

/// Read a task's items from `data_dir`, with each task's default prompts.
pub fn load(task: &str, data_dir: &Path) -> Result<Items> {
    load_with(task, data_dir, &Prompting::default())
}

/// Read a task's items from `data_dir`, with the prompts `p` asks for.
pub fn load_with(task: &str, data_dir: &Path, p: &Prompting) -> Result<Items> {
    let shots = p.shots_for(task);
    let mut items = match task {
        "ceval" => Items::Choice(choice::ceval(data_dir)?),
        "mmlu" => Items::Choice(choice::mmlu(data_dir)?),
        "agieval" => Items::Choice(choice::agieval(data_dir)?),
        "bbh" => Items::Gen(bbh::load(data_dir, shots)?),
        "cluewsc" => Items::Choice(choice::cluewsc(data_dir)?),
        "eprstmt" => Items::Choice(choice::eprstmt(data_dir)?),
        "cmrc" => Items::Gen(generation::squad(data_dir, "cmrc")?),
        "drcd" => Items::Gen(generation::squad(data_dir, "drcd")?),
        "lcsts" => Items::Gen(generation::lcsts(data_dir)?),
        "wmt22-zh-en" => Items::Gen(generation::wmt(data_dir, "zh", "en", shots)?),
        "wmt22-en-zh" => Items::Gen(generation::wmt(data_dir, "en", "zh", shots)?),
        "gsm8k" => Items::Gen(generation::gsm8k(data_dir)?),
        "triviaqa" => Items::Gen(generation::triviaqa(data_dir)?),
        "humaneval" => Items::Gen(humaneval::load(data_dir)?),
        "cloze" => Items::Choice(choice::cloze(data_dir)?),
        "emotion" => Items::Choice(emotion::choice(data_dir)?),
        "emotion-gen" => Items::Gen(emotion::generation(data_dir)?),
        "zh-fraction" => Items::Gen(generation::dialogue(data_dir)?),
        "turing" => Items::Judged(judged::turing(data_dir)?),
        "belle" => Items::Judged(judged::belle(data_dir)?),
        other => return Err(EvalError::UnknownTask(other.into(), TASKS.join(", "))),
    };
    if p.chat {
        if let Items::Gen(v) = &mut items {
            v.iter_mut().for_each(|it| it.chat = true);
        }
    }
    Ok(items)
}
