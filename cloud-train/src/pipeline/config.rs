//! The pipeline's config (configs/pipeline-demo.toml): the run directory, the starting GGUF,
//! what is measured, the corpora, and the CPT / SFT / C-SFT-E / DPO stage configs with their
//! overrides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::PipelineError;
use crate::train::config::load_toml;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Corpus {
    pub name: String,
    pub path: PathBuf,
    pub role: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    pub config: PathBuf,
    /// Overrides for the stage's own config (`train.steps=24`).
    #[serde(default)]
    pub set: Vec<String>,
}

/// The emotion-strengthened SFT (C-SFT-E): SFT again, from the SFT checkpoint, on the SFT data
/// mixed with emotional-support dialogues.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsfteConfig {
    /// An SFT config (its `[data] train` is replaced by the mix).
    pub config: PathBuf,
    #[serde(default)]
    pub set: Vec<String>,
    /// The SFT stage's data.
    pub sft_data: Vec<PathBuf>,
    /// Emotional-support dialogues (JSONL in any SFT form).
    pub emotion_data: Vec<PathBuf>,
    /// The dialogues' share of the mixed training file (the paper's ratio is not published).
    pub emotion_share: f64,
    #[serde(default)]
    pub seed: u64,
    /// Emotional-intelligence tasks scored on the SFT and C-SFT-E models (with the
    /// Chinese-token fraction).
    #[serde(default = "ei_tasks")]
    pub ei_tasks: Vec<String>,
}

fn ei_tasks() -> Vec<String> {
    vec!["emotion".into()]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// The run directory: every stage's output goes under it.
    pub dir: PathBuf,
    /// The starting model, a GGUF file (dequantized to an HF checkpoint).
    pub base_gguf: PathBuf,
    /// The final GGUF type (`q4_k_m`, `q8_0`, ...).
    #[serde(default = "q4_k_m")]
    pub quant: String,
    #[serde(default = "two")]
    pub threads: usize,
    pub eval_data: PathBuf,
    /// Sample tasks scored before and after (the Chinese-token fraction is always measured).
    pub eval_tasks: Vec<String>,
    /// Items per task (the first N); `None`: all.
    #[serde(default)]
    pub eval_limit: Option<usize>,
    /// Items for the tasks named here, instead of `eval_limit` (`"zh-fraction" = 200`).
    #[serde(default)]
    pub task_limits: BTreeMap<String, usize>,
    #[serde(default = "val_fraction")]
    pub val_fraction: f64,
    pub corpus: Vec<Corpus>,
    pub cpt: StageConfig,
    pub sft: StageConfig,
    /// Optional: the C-SFT-E stage between SFT and DPO (DPO then continues from it).
    #[serde(default)]
    pub csfte: Option<CsfteConfig>,
    pub dpo: StageConfig,
}

fn q4_k_m() -> String {
    "q4_k_m".into()
}
fn two() -> usize {
    2
}
fn val_fraction() -> f64 {
    0.25
}

impl PipelineConfig {
    /// Read and check a pipeline config: the stage configs exist, the corpora have roles the
    /// CPT mixer knows, and the quantization type is a GGUF file type name.
    pub fn from_file(path: &Path, overrides: &[String]) -> Result<Self, PipelineError> {
        let cfg: Self = load_toml(path, overrides)?;
        let bad = |message: String| PipelineError::File {
            path: path.to_path_buf(),
            message,
        };
        for (name, st) in [("cpt", &cfg.cpt), ("sft", &cfg.sft), ("dpo", &cfg.dpo)] {
            if !st.config.is_file() {
                return Err(bad(format!(
                    "[{name}] config {} not found",
                    st.config.display()
                )));
            }
        }
        if let Some(c) = &cfg.csfte {
            if !c.config.is_file() {
                return Err(bad(format!(
                    "[csfte] config {} not found",
                    c.config.display()
                )));
            }
            if !(c.emotion_share > 0.0 && c.emotion_share < 1.0) {
                return Err(bad(format!(
                    "[csfte] emotion_share {} must be between 0 and 1",
                    c.emotion_share
                )));
            }
            if let Some(f) = c
                .sft_data
                .iter()
                .chain(&c.emotion_data)
                .find(|f| !f.is_file())
            {
                return Err(bad(format!("[csfte] data file {} not found", f.display())));
            }
            llm_eval::tasks::resolve(&c.ei_tasks)
                .map_err(|e| bad(format!("[csfte] ei_tasks: {e}")))?;
            if c.sft_data.is_empty() || c.emotion_data.is_empty() {
                return Err(bad("[csfte] give sft_data and emotion_data".into()));
            }
        }
        for c in &cfg.corpus {
            if !["base", "additional", "domain"].contains(&c.role.as_str()) {
                return Err(bad(format!(
                    "corpus {:?}: role {:?} (base, additional, domain)",
                    c.name, c.role
                )));
            }
        }
        llm_eval::tasks::resolve(&cfg.eval_tasks).map_err(|e| bad(format!("eval_tasks: {e}")))?;
        let named: Vec<String> = cfg.task_limits.keys().cloned().collect();
        llm_eval::tasks::resolve(&named).map_err(|e| bad(format!("task_limits: {e}")))?;
        if cfg.corpus.is_empty() || cfg.eval_tasks.is_empty() {
            return Err(bad("give at least one [[corpus]] and one eval task".into()));
        }
        Ok(cfg)
    }
}
