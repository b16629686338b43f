//! The end-to-end pipeline: from a GGUF and sample corpora to a quantized chatbot in one run
//! directory. Its stages are data ([`STAGES`]: a name and a function over the config); each
//! calls the library (GGUF to HF, data preparation, CPT, SFT, C-SFT-E, DPO, export, quantization,
//! evaluation, the report's tables) and reports what it measured. Each finished stage is recorded in `stages.json`;
//! a re-run skips those and resumes the failed one (the training stages resume from their own
//! checkpoints).

pub mod config;
mod stages;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};

pub use config::{Corpus, CsfteConfig, PipelineConfig, StageConfig};
pub use stages::{Stage, STAGES};

use crate::train::{Event, TrainError};

/// Why the pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Config(#[from] crate::train::config::ConfigError),
    #[error("{}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Checkpoint(#[from] crate::CheckpointError),
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
    #[error(transparent)]
    Quantize(#[from] quantize::Error),
    #[error(transparent)]
    Eval(#[from] llm_eval::EvalError),
    #[error(transparent)]
    Runtime(#[from] edge_runtime::Error),
    #[error(transparent)]
    Report(#[from] crate::plot::PlotError),
    #[error("pipeline stage {stage:?} failed (fix it and run the same command again: finished stages are skipped): {source}")]
    Stage {
        stage: &'static str,
        source: Box<PipelineError>,
    },
}

impl PipelineError {
    fn io(path: impl AsRef<Path>) -> impl Fn(std::io::Error) -> Self {
        let path = path.as_ref().to_path_buf();
        move |source| PipelineError::Io {
            path: path.clone(),
            source,
        }
    }
}

/// What the pipeline reports as it goes.
#[derive(Debug)]
pub enum PipelineEvent {
    /// Stage `index` of `total` (from 0) starts, or was finished by an earlier run.
    Stage {
        index: usize,
        total: usize,
        name: &'static str,
        done_already: bool,
    },
    /// A training stage's own event.
    Train(&'static str, Event),
    /// A stage finished after `seconds`.
    Finished {
        index: usize,
        total: usize,
        name: &'static str,
        seconds: f64,
    },
}

/// What the pipeline ended with.
#[derive(Debug, Clone)]
pub struct PipelineSummary {
    /// `summary.md`: one row per stage, the totals below.
    pub markdown: String,
    /// The final quantized model.
    pub gguf: PathBuf,
}

/// `stages.json`: what each finished stage reported, written after each stage.
struct Ledger {
    path: PathBuf,
    done: BTreeMap<String, Value>,
}

impl Ledger {
    fn open(dir: &Path) -> Result<Self, PipelineError> {
        let path = dir.join("stages.json");
        let done = match std::fs::read_to_string(&path) {
            Ok(t) => serde_json::from_str(&t).map_err(|e| PipelineError::File {
                path: path.clone(),
                message: format!("not JSON: {e}"),
            })?,
            Err(_) => BTreeMap::new(),
        };
        Ok(Self { path, done })
    }

    fn record(&mut self, stage: &str, info: Value) -> Result<(), PipelineError> {
        self.done.insert(stage.to_string(), info);
        let text = serde_json::to_string_pretty(&self.done).unwrap_or_default();
        llama_spec::atomic::write_atomic(&self.path, text.as_bytes())
            .map_err(PipelineError::io(&self.path))
    }
}

/// Run every stage not finished yet, in order; write `summary.md`.
pub fn run(
    cfg: &PipelineConfig,
    mut report: impl FnMut(PipelineEvent),
) -> Result<PipelineSummary, PipelineError> {
    if !cfg.base_gguf.is_file() {
        return Err(PipelineError::File {
            path: cfg.base_gguf.clone(),
            message: "base_gguf not found (run scripts/fetch-assets.sh)".into(),
        });
    }
    std::fs::create_dir_all(&cfg.dir).map_err(PipelineError::io(&cfg.dir))?;
    let mut ledger = Ledger::open(&cfg.dir)?;
    let start = Instant::now();
    let total = STAGES.len();
    for (index, stage) in STAGES.iter().enumerate() {
        let name = stage.name;
        let done_already = ledger.done.contains_key(name);
        report(PipelineEvent::Stage {
            index,
            total,
            name,
            done_already,
        });
        if done_already {
            continue;
        }
        let t0 = Instant::now();
        let mut info =
            (stage.run)(cfg, &mut |e| report(PipelineEvent::Train(name, e))).map_err(|e| {
                PipelineError::Stage {
                    stage: name,
                    source: Box::new(e),
                }
            })?;
        let seconds = t0.elapsed().as_secs_f64();
        info["seconds"] = json!(seconds);
        ledger.record(name, info)?;
        report(PipelineEvent::Finished {
            index,
            total,
            name,
            seconds,
        });
    }
    let table = stages::summary(&ledger.done);
    let total_s: f64 = ledger
        .done
        .values()
        .filter_map(|v| v.get("seconds").and_then(Value::as_f64))
        .sum();
    let markdown = format!(
        "{table}\ntotal {:.1} min (this run {:.1} min)\n",
        total_s / 60.0,
        start.elapsed().as_secs_f64() / 60.0
    );
    let p = cfg.dir.join("summary.md");
    llama_spec::atomic::write_atomic(&p, markdown.as_bytes()).map_err(PipelineError::io(&p))?;
    Ok(PipelineSummary {
        markdown,
        gguf: stages::final_gguf(cfg),
    })
}
