//! `cloud-train eval`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use cloud_train::device::Backend;
use llm_eval::{EdgeModel, LanguageModel, RunOptions};

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// An HF checkpoint directory (evaluated with the burn model) or a .gguf file (evaluated
    /// with edge-runtime).
    #[arg(long)]
    model: PathBuf,
    /// Comma-separated tasks, or `all`: ceval, mmlu, agieval, cluewsc, eprstmt, cmrc, drcd,
    /// lcsts, wmt22-zh-en, wmt22-en-zh, gsm8k, triviaqa, humaneval, cloze, emotion, emotion-gen,
    /// zh-fraction.
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
    /// Few-shot examples for the tasks that take them (wmt22-*; the paper uses 5).
    #[arg(long)]
    shots: Option<usize>,
    /// Render generation prompts through the model's chat template (instruct models).
    #[arg(long)]
    chat: bool,
}

pub fn run(a: EvalArgs) -> Result<()> {
    let tasks = llm_eval::tasks::resolve(&a.tasks)?;
    let mut model: Box<dyn LanguageModel> = if a.model.is_dir() {
        let device = a.backend.device()?;
        Box::new(
            cloud_train::eval::BurnModel::load(&a.model, &device)
                .with_context(|| format!("loading {}", a.model.display()))?,
        )
    } else if a.model.extension().is_some_and(|e| e == "gguf") {
        Box::new(EdgeModel::load(&a.model, a.ctx, a.threads)?)
    } else {
        bail!(
            "{}: not a checkpoint directory nor a .gguf file",
            a.model.display()
        );
    };
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
        prompting: llm_eval::tasks::Prompting {
            shots: a.shots,
            chat: a.chat,
        },
    };
    let report = llm_eval::evaluate(model.as_mut(), &tasks, &a.data_dir, &opts)?;
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
