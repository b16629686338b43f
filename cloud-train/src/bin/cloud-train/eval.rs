//! `cloud-train eval`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use cloud_train::device::Backend;
use llm_eval::{EdgeModel, LanguageModel, OpenAiModel, RunOptions};

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// An HF checkpoint directory (evaluated with the burn model), a .gguf file (evaluated
    /// with edge-runtime), or an OpenAI-compatible endpoint `http://host:port/v1` (chat-level
    /// tasks only: turing, belle).
    #[arg(long)]
    model: String,
    /// Who judges the judged tasks (turing, belle): the same kinds as `--model`; by default
    /// the model judges itself.
    #[arg(long)]
    judge: Option<String>,
    /// The served model's name for HTTP endpoints (default: the first `/v1/models` lists).
    #[arg(long)]
    api_model: Option<String>,
    /// Bearer key for HTTP endpoints.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Comma-separated tasks, or `all`: ceval, mmlu, agieval, bbh, cluewsc, eprstmt, cmrc, drcd,
    /// lcsts, wmt22-zh-en, wmt22-en-zh, gsm8k, triviaqa, humaneval, cloze, emotion, emotion-gen,
    /// zh-fraction, turing, belle; `eq4`: the paper's Eq. 4 set (ceval, mmlu, agieval, bbh,
    /// gsm8k, humaneval, triviaqa).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "ceval,mmlu,cluewsc,eprstmt"
    )]
    tasks: Vec<String>,
    /// The benchmarks' files, each in its own public format (see configs/eval-data/README.md).
    #[arg(long, default_value = "configs/eval-data")]
    data_dir: PathBuf,
    /// Results JSON (`scores`, `average`, per-task metrics): what `sweep collect` reads as a
    /// run's `eval.json`.
    #[arg(long, default_value = "eval.json")]
    out: PathBuf,
    /// Only the first N items of each task.
    #[arg(long)]
    limit: Option<usize>,
    /// Multiple-choice items per backend call.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Keep each item's prediction in the JSON.
    #[arg(long)]
    log_samples: bool,
    /// Threads (GGUF models).
    #[arg(short = 't', long, default_value_t = std::thread::available_parallelism().map_or(1, |n| n.get()))]
    threads: usize,
    /// Context length (GGUF models).
    #[arg(long, default_value_t = 4096)]
    ctx: usize,
    /// burn backend for checkpoint directories.
    #[arg(long, default_value = "flex")]
    backend: Backend,
    /// Python used to run HumanEval's tests (model-written code: use a sandbox).
    #[arg(long, default_value = "python3")]
    python: String,
    /// Seconds each HumanEval program may run.
    #[arg(long, default_value_t = 10.0)]
    exec_timeout: f64,
    /// Few-shot examples for the tasks that take them: `N` for all of them, or `TASK=N` per
    /// task name prefix, repeatable (the paper: `--shots wmt22=5` and BBH's default 3).
    #[arg(long, value_delimiter = ',')]
    shots: Vec<String>,
    /// Render generation prompts through the model's chat template (instruct models).
    #[arg(long)]
    chat: bool,
}

/// `--shots` values: `N` for every task that takes shots, `PREFIX=N` for some.
fn prompting(shots: &[String], chat: bool) -> Result<llm_eval::tasks::Prompting> {
    let mut p = llm_eval::tasks::Prompting {
        chat,
        ..Default::default()
    };
    for s in shots {
        let count = |n: &str| {
            n.trim()
                .parse::<usize>()
                .with_context(|| format!("--shots {s:?}: expected N or TASK=N"))
        };
        match s.split_once('=') {
            Some((task, n)) => {
                p.shots_by_task.insert(task.trim().to_string(), count(n)?);
            }
            None => p.shots = Some(count(s)?),
        }
    }
    Ok(p)
}

/// A model from its spec: an `http://` endpoint, a checkpoint directory or a .gguf file.
fn load(spec: &str, a: &EvalArgs) -> Result<Box<dyn LanguageModel>> {
    if spec.starts_with("http://") || spec.starts_with("https://") {
        return Ok(Box::new(OpenAiModel::connect(
            spec,
            a.api_model.as_deref(),
            a.api_key.clone(),
        )?));
    }
    let path = PathBuf::from(spec);
    if path.is_dir() {
        let device = a.backend.device()?;
        Ok(Box::new(
            cloud_train::eval::BurnModel::load(&path, &device)
                .with_context(|| format!("loading {}", path.display()))?,
        ))
    } else if path.extension().is_some_and(|e| e == "gguf") {
        Ok(Box::new(EdgeModel::load(&path, a.ctx, a.threads)?))
    } else {
        bail!("{spec}: not a checkpoint directory, a .gguf file nor an http:// endpoint");
    }
}

pub fn run(a: EvalArgs) -> Result<()> {
    let tasks = llm_eval::tasks::resolve(&a.tasks)?;
    let mut model = load(&a.model, &a)?;
    let mut judge = a.judge.as_deref().map(|j| load(j, &a)).transpose()?;
    eprintln!(
        "eval: {} on {} from {}{}",
        model.name(),
        tasks.join(", "),
        a.data_dir.display(),
        a.limit
            .map_or(String::new(), |n| format!(" (first {n} items each)"))
    );
    let opts = RunOptions {
        limit: a.limit,
        batch: a.batch,
        progress: true,
        python: a.python,
        exec_timeout: Duration::from_secs_f64(a.exec_timeout),
        exec_threads: a.threads.max(1),
        log_samples: a.log_samples,
        prompting: prompting(&a.shots, a.chat)?,
    };
    if let Some(j) = &judge {
        eprintln!("eval: judged tasks judged by {}", j.name());
    }
    let report = llm_eval::evaluate_judged(
        model.as_mut(),
        judge.as_deref_mut(),
        &tasks,
        &a.data_dir,
        &opts,
    )?;
    report.write(&a.out)?;
    for (name, r) in &report.tasks {
        let m: Vec<String> = r
            .metrics
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect();
        eprintln!(
            "  {name:<12} n={:<5} {}  ({:.1} s)",
            r.n,
            m.join(", "),
            r.seconds
        );
    }
    println!("{}", llm_eval::markdown(std::slice::from_ref(&report)));
    eprintln!(
        "{} -> {}",
        cloud_train::eval::summary(&report),
        a.out.display()
    );
    Ok(())
}
