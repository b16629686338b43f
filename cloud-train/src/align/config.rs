//! The `sft` / `dpo` TOML config: the shared `[model]`, `[train]` and `[output]` sections (see
//! `train::config`); `[data]` lists chat JSONL files and `[dpo]` the preference loss.

use std::path::PathBuf;

use crate::train::config::{
    Invalid, ModelSection, OutputSection, RunConfig, RunSections, TrainSection,
};
use crate::train::dpo::DpoLoss;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlignConfig {
    pub model: ModelSection,
    pub data: AlignData,
    pub train: TrainSection,
    #[serde(default)]
    pub dpo: DpoSection,
    pub output: OutputSection,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlignData {
    /// JSONL files (SFT: messages / conversations / alpaca lines; DPO: preference lines).
    pub train: Vec<PathBuf>,
    /// Longer examples (in tokens, after the chat template) are skipped and counted.
    #[serde(default = "default_max_len")]
    pub max_len: usize,
    /// Fraction of the examples held out for validation (by a seeded hash).
    #[serde(default = "default_val_fraction")]
    pub val_fraction: f64,
    /// Shuffling and the validation split.
    #[serde(default)]
    pub seed: u64,
}

fn default_max_len() -> usize {
    2048
}
fn default_val_fraction() -> f64 {
    0.1
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpoSection {
    #[serde(default = "default_beta")]
    pub beta: f64,
    #[serde(default = "sigmoid")]
    pub loss: DpoLoss,
    #[serde(default)]
    pub label_smoothing: f64,
}

fn default_beta() -> f64 {
    0.1
}
fn sigmoid() -> DpoLoss {
    DpoLoss::Sigmoid
}

impl Default for DpoSection {
    fn default() -> Self {
        Self {
            beta: default_beta(),
            loss: DpoLoss::Sigmoid,
            label_smoothing: 0.0,
        }
    }
}

impl RunConfig for AlignConfig {
    fn sections(&self) -> RunSections<'_> {
        RunSections::new(&self.model, &self.train, &self.output)
    }

    fn validate_own(&self) -> Result<(), Invalid> {
        let t = &self.train;
        if t.steps.is_none() == t.epochs.is_none() || t.tokens.is_some() {
            return Err(Invalid::new(
                "[train]: give exactly one of `steps` or `epochs`",
            ));
        }
        if t.epochs.is_some_and(|e| !(e > 0.0 && e.is_finite())) {
            return Err(Invalid::new("[train] epochs must be positive"));
        }
        if self.data.train.is_empty() {
            return Err(Invalid::new("[data] train: no files"));
        }
        if !(0.0..1.0).contains(&self.data.val_fraction) {
            return Err(Invalid::new("[data] val_fraction must be in [0, 1)"));
        }
        if self.data.max_len < 2 {
            return Err(Invalid::new("[data] max_len must be at least 2"));
        }
        let d = &self.dpo;
        if !(d.beta > 0.0 && d.beta.is_finite() && (0.0..0.5).contains(&d.label_smoothing)) {
            return Err(Invalid::new(
                "[dpo] beta must be positive and label_smoothing in [0, 0.5)",
            ));
        }
        Ok(())
    }
}

impl AlignConfig {
    /// Optimizer steps for `examples` training examples (pairs for DPO).
    pub fn total_steps(&self, examples: usize) -> u64 {
        match (self.train.steps, self.train.epochs) {
            (Some(s), _) => s,
            (None, Some(e)) => ((examples as f64 * e) / self.train.gbs as f64)
                .ceil()
                .max(1.0) as u64,
            _ => 0,
        }
    }
}
