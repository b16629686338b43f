//! Running tasks on a model: request building, batching, progress, scoring.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use llama_spec::chat::Message;
use serde_json::{json, Value};

use crate::backend::{encode_pair, GenRequest, LanguageModel, LoglikRequest};
use crate::error::Result;
use crate::metrics::text::cjk_tokens;
use crate::report::{Report, TaskResult};
use crate::tasks::{self, generation, humaneval, ChoiceItem, GenItem, Items};

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Items per task (the first N), for quick runs.
    pub limit: Option<usize>,
    /// Multiple-choice items scored per backend call.
    pub batch: usize,
    pub progress: bool,
    /// Python for HumanEval's tests.
    pub python: String,
    pub exec_timeout: Duration,
    pub exec_threads: usize,
    /// Keep every item's prediction in the results.
    pub log_samples: bool,
    /// Shots and chat template (see `tasks::Prompting`).
    pub prompting: tasks::Prompting,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            limit: None,
            batch: 8,
            progress: true,
            python: "python3".into(),
            exec_timeout: Duration::from_secs(10),
            exec_threads: 2,
            log_samples: false,
            prompting: tasks::Prompting::default(),
        }
    }
}

fn bar(opts: &RunOptions, task: &str, len: usize) -> ProgressBar {
    if !opts.progress {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>12} {bar:30} {pos}/{len} items  {per_sec}  eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_prefix(task.to_string());
    pb
}

/// Evaluate `tasks` on `model`; data from `data_dir`. Judged tasks are judged by the model itself.
pub fn evaluate(
    model: &mut dyn LanguageModel,
    tasks: &[String],
    data_dir: &Path,
    opts: &RunOptions,
) -> Result<Report> {
    evaluate_judged(model, None, tasks, data_dir, opts)
}

/// Evaluate `tasks` on `model`, with `judge` (else the model itself) for the judged tasks.
pub fn evaluate_judged(
    model: &mut dyn LanguageModel,
    mut judge: Option<&mut (dyn LanguageModel + '_)>,
    tasks: &[String],
    data_dir: &Path,
    opts: &RunOptions,
) -> Result<Report> {
    let start = Instant::now();
    let mut results = BTreeMap::new();
    for t in tasks {
        let r = run_task_judged(model, judge.as_deref_mut(), t, data_dir, opts)?;
        results.insert(t.clone(), r);
    }
    Ok(Report::new(
        model.name(),
        data_dir,
        opts.limit,
        results,
        start.elapsed().as_secs_f64(),
    ))
}

pub fn run_task(
    model: &mut dyn LanguageModel,
    task: &str,
    data_dir: &Path,
    opts: &RunOptions,
) -> Result<TaskResult> {
    run_task_judged(model, None, task, data_dir, opts)
}

pub fn run_task_judged(
    model: &mut dyn LanguageModel,
    judge: Option<&mut (dyn LanguageModel + '_)>,
    task: &str,
    data_dir: &Path,
    opts: &RunOptions,
) -> Result<TaskResult> {
    let start = Instant::now();
    let mut items = tasks::load_with(task, data_dir, &opts.prompting)?;
    if let Some(n) = opts.limit {
        items.truncate(n);
    }
    let n = items.len();
    let (metrics, samples) = match &items {
        Items::Choice(v) => run_choice(model, task, v, opts)?,
        Items::Gen(v) => run_gen(model, task, v, opts)?,
        Items::Judged(v) => {
            let pb = bar(opts, task, v.len());
            let r = tasks::judged::run(model, judge, v, opts.log_samples, &|| pb.inc(1))?;
            pb.finish_and_clear();
            r
        }
    };
    Ok(TaskResult {
        task: task.to_string(),
        n,
        metrics,
        primary: tasks::primary_metric(task).map(str::to_string),
        shots: tasks::takes_shots(task).then(|| opts.prompting.shots_for(task)),
        chat: (opts.prompting.chat && matches!(items, Items::Gen(_)))
            || matches!(items, Items::Judged(_)),
        seconds: start.elapsed().as_secs_f64(),
        samples,
    })
}

/// The log-likelihood requests of one multiple-choice item (one per choice).
pub fn choice_requests(model: &dyn LanguageModel, item: &ChoiceItem) -> Result<Vec<LoglikRequest>> {
    item.choices
        .iter()
        .map(|c| encode_pair(model, &item.context, c))
        .collect()
}

fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

type Scored = (BTreeMap<String, f64>, Vec<Value>);

fn run_choice(
    model: &mut dyn LanguageModel,
    task: &str,
    items: &[ChoiceItem],
    opts: &RunOptions,
) -> Result<Scored> {
    let pb = bar(opts, task, items.len());
    let (mut acc, mut acc_norm) = (0usize, 0usize);
    let mut picks = Vec::with_capacity(items.len());
    let mut samples = Vec::new();
    for chunk in items.chunks(opts.batch.max(1)) {
        let mut reqs = Vec::new();
        for it in chunk {
            reqs.extend(choice_requests(model, it)?);
        }
        let lls = model.loglikelihood(&reqs)?;
        let mut at = 0;
        for it in chunk {
            let ll: Vec<f64> = lls[at..at + it.choices.len()]
                .iter()
                .map(|l| l.logprob)
                .collect();
            at += it.choices.len();
            let norm: Vec<f64> = ll
                .iter()
                .zip(&it.choices)
                .map(|(l, c)| l / c.chars().count().max(1) as f64)
                .collect();
            let (pick, pick_norm) = (argmax(&ll), argmax(&norm));
            acc += usize::from(pick == it.gold);
            picks.push(Some(pick));
            acc_norm += usize::from(pick_norm == it.gold);
            if opts.log_samples {
                samples.push(json!({"id": it.id, "gold": it.gold, "pick": pick, "pick_norm": pick_norm, "loglik": ll}));
            }
        }
        pb.inc(chunk.len() as u64);
    }
    pb.finish_and_clear();
    let n = items.len().max(1) as f64;
    let mut m = BTreeMap::new();
    m.insert("acc".into(), 100.0 * acc as f64 / n);
    m.insert("acc_norm".into(), 100.0 * acc_norm as f64 / n);
    if task == "emotion" {
        let gold: Vec<usize> = items.iter().map(|i| i.gold).collect();
        m.insert("macro_f1".into(), tasks::emotion::macro_f1(&gold, &picks));
    }
    Ok((m, samples))
}

/// Token ids of a generation item's prompt (chat template, or BOS + raw text).
pub fn gen_prompt(model: &dyn LanguageModel, item: &GenItem) -> Result<Vec<u32>> {
    if item.chat {
        let mut msgs = Vec::new();
        if let Some(s) = generation::system_prompt(item) {
            msgs.push(Message::system(s));
        }
        msgs.push(Message::user(item.prompt.clone()));
        // The template writes BOS itself; its special-token texts encode to their ids.
        return model.encode(&model.chat_prompt(&msgs)?);
    }
    let mut ids: Vec<u32> = model.bos().into_iter().collect();
    ids.extend(model.encode(&item.prompt)?);
    Ok(ids)
}

fn run_gen(
    model: &mut dyn LanguageModel,
    task: &str,
    items: &[GenItem],
    opts: &RunOptions,
) -> Result<Scored> {
    let pb = bar(opts, task, items.len());
    let mut outputs = Vec::with_capacity(items.len());
    // zh-fraction: (CJK tokens, tokens) per reply.
    let mut replies: Vec<(usize, usize)> = Vec::new();
    for it in items {
        let prompt = gen_prompt(model, it)?;
        let out = model.generate(&GenRequest {
            prompt,
            max_tokens: it.max_tokens,
            stop: it.stop.clone(),
        })?;
        if task == "zh-fraction" {
            let bytes: Vec<Vec<u8>> = out.tokens.iter().map(|&t| model.token_bytes(t)).collect();
            let pieces: Vec<&[u8]> = bytes
                .iter()
                .map(Vec::as_slice)
                .filter(|b| !b.is_empty())
                .collect();
            let cjk = cjk_tokens(&pieces).iter().filter(|&&c| c).count();
            replies.push((cjk, pieces.len()));
        }
        outputs.push(out.text);
        pb.inc(1);
    }
    pb.finish_and_clear();
    let mut metrics = generation::score(task, items, &outputs);
    let mut per_item: Vec<Option<f64>> = items
        .iter()
        .zip(&outputs)
        .map(|(i, o)| generation::item_score(task, i, o))
        .collect();
    if task == "humaneval" {
        let outcomes = humaneval::execute_all(
            items,
            &outputs,
            &opts.python,
            opts.exec_timeout,
            opts.exec_threads,
        )?;
        let passed = outcomes
            .iter()
            .filter(|o| **o == humaneval::Outcome::Passed)
            .count();
        metrics.insert(
            "pass@1".into(),
            100.0 * passed as f64 / items.len().max(1) as f64,
        );
        per_item = outcomes
            .iter()
            .map(|o| Some(f64::from(u8::from(*o == humaneval::Outcome::Passed))))
            .collect();
    }
    if task == "zh-fraction" {
        metrics.extend(generation::zh_fraction_metrics(items, &replies));
    }
    let samples = if opts.log_samples {
        items
            .iter()
            .zip(&outputs)
            .zip(&per_item)
            .map(|((i, o), s)| json!({"id": i.id, "output": o, "refs": i.refs, "score": s}))
            .collect()
    } else {
        Vec::new()
    };
    Ok((metrics, samples))
}
