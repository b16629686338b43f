//! The `cpt` TOML config: model, data mixture, optimization, output. Relative paths are taken
//! from the working directory, as `cloud-train cpt` is run from the project root.

use std::path::{Path, PathBuf};

use crate::data::OnExhausted;
use crate::device::Backend;
use crate::dist::{DistSettings, Engine, ZeroStage};
use crate::train::{AdamWSettings, Decay, MemoryPlan};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CptConfig {
    pub model: ModelSection,
    pub data: DataSection,
    pub train: TrainSection,
    pub output: OutputSection,
}

/// Where the starting weights come from.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// An HF checkpoint directory to continue from (the usual case: Llama-3 8B or 70B).
    pub path: Option<PathBuf>,
    /// Or an HF `config.json` for a randomly initialized model (tiny demos, tests).
    pub config: Option<PathBuf>,
    #[serde(default)]
    pub init_seed: u64,
    /// `tokenizer.json` copied into every checkpoint (default: the one in `path`).
    pub tokenizer: Option<PathBuf>,
    /// SFT/DPO: the chat template: `llama3`, `chatml`, or a `tokenizer_config.json` path
    /// (default: the model directory's `tokenizer_config.json`, else `llama3`).
    pub chat_template: Option<String>,
}

/// What role a corpus plays in the mixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The original language(s): they get what the others leave.
    Base,
    /// The additional language: together these get `almr` of the tokens.
    Additional,
    /// Domain corpora (code, math, ...): each gets its own `fraction`.
    Domain,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorpusSection {
    pub name: String,
    /// A directory written by `cloud-train data prepare`.
    pub path: PathBuf,
    pub role: Role,
    /// Share within its role (base, additional); default 1.
    pub weight: Option<f64>,
    /// Fraction of all tokens (domain corpora only).
    pub fraction: Option<f64>,
    #[serde(default = "repeat")]
    pub on_exhausted: OnExhausted,
}

fn repeat() -> OnExhausted {
    OnExhausted::Repeat
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Tokens per training sequence (the paper: 2048).
    pub seq_len: usize,
    /// Additional Language Mixture Ratio: the fraction of training tokens from the
    /// `additional` corpora.
    pub almr: f64,
    #[serde(default)]
    pub seed: u64,
    /// Validation sequences per corpus (from each corpus's `val` split).
    #[serde(default = "default_val_sequences")]
    pub val_sequences: usize,
    pub corpus: Vec<CorpusSection>,
}

fn default_val_sequences() -> usize {
    16
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSection {
    #[serde(default = "flex")]
    pub backend: Backend,
    /// Sequences per forward/backward pass.
    pub mbs: usize,
    /// Sequences per optimizer step (gradient accumulation over `gbs / mbs` micro-batches).
    pub gbs: usize,
    /// Optimizer steps; or give `tokens`.
    pub steps: Option<u64>,
    /// Training tokens (rounded down to whole steps of `gbs * seq_len`).
    pub tokens: Option<u64>,
    /// SFT/DPO: passes over the training examples (instead of `steps`).
    pub epochs: Option<f64>,
    /// Peak learning rate.
    pub lr: f64,
    #[serde(default)]
    pub min_lr: f64,
    pub warmup_steps: Option<u64>,
    /// Warmup as a fraction of the steps (when `warmup_steps` is not given).
    #[serde(default)]
    pub warmup_ratio: f64,
    #[serde(default = "linear")]
    pub schedule: Decay,
    #[serde(default = "beta1")]
    pub beta1: f64,
    #[serde(default = "beta2")]
    pub beta2: f64,
    #[serde(default = "eps")]
    pub eps: f64,
    /// Decoupled weight decay (the paper: 0.01).
    #[serde(default = "weight_decay")]
    pub weight_decay: f64,
    /// Decay the RMSNorm weights too (HF's Trainer does not).
    #[serde(default)]
    pub decay_norms: bool,
    /// Clip the global gradient norm to this (0 or absent: no clipping).
    #[serde(default = "default_clip")]
    pub max_grad_norm: Option<f64>,
    /// `f32`, or `bf16` (BF16 compute, f32 master weights; for GPU backends).
    #[serde(default = "f32_name")]
    pub precision: String,
    /// Memory savers (see `train::MemoryPlan`).
    #[serde(default)]
    pub checkpoint_layers: bool,
    pub attention_block: Option<usize>,
    pub ce_chunk: Option<usize>,
    /// The device's peak dense TFLOP/s at this precision, for the MFU estimate.
    pub peak_tflops: Option<f64>,
    /// Several ranks (see docs/distributed.md): `auto` (NCCL on cuda, MPI otherwise),
    /// `mpi`, `nccl` or `single`.
    #[serde(default)]
    pub collective: Engine,
    /// 0: every rank keeps the whole AdamW state; 1: each keeps 1/N of it (ZeRO-1).
    #[serde(default)]
    pub zero_stage: u8,
    /// Seconds a rank waits in one collective call for the others before it exits.
    #[serde(default = "collective_timeout")]
    pub collective_timeout_s: f64,
}

fn collective_timeout() -> f64 {
    DistSettings::default().collective_timeout_s
}

fn beta1() -> f64 {
    AdamWSettings::default().beta1
}
fn beta2() -> f64 {
    AdamWSettings::default().beta2
}
fn eps() -> f64 {
    AdamWSettings::default().eps
}
fn weight_decay() -> f64 {
    AdamWSettings::default().weight_decay
}
fn flex() -> Backend {
    Backend::Flex
}
fn linear() -> Decay {
    Decay::Linear
}
fn default_clip() -> Option<f64> {
    Some(1.0)
}
fn f32_name() -> String {
    "f32".into()
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    pub dir: PathBuf,
    /// Save a checkpoint every N steps (and always at the end).
    pub save_every: u64,
    /// Checkpoints kept (older ones are removed).
    #[serde(default = "default_keep")]
    pub keep_last: usize,
    /// Validation every N steps (and at the end); 0: only at the end.
    #[serde(default)]
    pub eval_every: u64,
    /// The dtype of the saved weights. F32 (default) resumes bit-exactly; BF16 halves the size.
    #[serde(default = "f32_name")]
    pub save_dtype: String,
}

fn default_keep() -> usize {
    3
}

impl ModelSection {
    pub fn validate(&self) -> Result<(), String> {
        if self.path.is_some() == self.config.is_some() {
            return Err("[model]: give exactly one of `path` (continue from a checkpoint) or `config` (random init)".into());
        }
        Ok(())
    }
}

impl TrainSection {
    /// The checks every training command shares.
    pub fn validate(&self) -> Result<(), String> {
        if self.mbs == 0 || self.gbs == 0 || !self.gbs.is_multiple_of(self.mbs) {
            return Err(format!(
                "[train] gbs {} must be a positive multiple of mbs {}",
                self.gbs, self.mbs
            ));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) || self.min_lr < 0.0 || self.min_lr > self.lr {
            return Err(format!(
                "[train] lr {} must be positive and min_lr {} in [0, lr]",
                self.lr, self.min_lr
            ));
        }
        if !["f32", "bf16"].contains(&self.precision.as_str()) {
            return Err(format!(
                "[train] precision {:?}: f32 or bf16",
                self.precision
            ));
        }
        ZeroStage::from_stage(self.zero_stage).map_err(|e| format!("[train] {e}"))?;
        if self.collective_timeout_s.is_nan() || self.collective_timeout_s <= 0.0 {
            return Err(format!(
                "[train] collective_timeout_s {} must be positive",
                self.collective_timeout_s
            ));
        }
        Ok(())
    }

    /// The distributed settings (validated by [`TrainSection::validate`]).
    pub fn dist(&self) -> DistSettings {
        DistSettings {
            collective: self.collective,
            zero: ZeroStage::from_stage(self.zero_stage).unwrap_or_default(),
            collective_timeout_s: self.collective_timeout_s,
        }
    }

    pub fn adamw(&self) -> AdamWSettings {
        AdamWSettings {
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            decay_norms: self.decay_norms,
        }
    }

    pub fn memory_plan(&self) -> MemoryPlan {
        MemoryPlan {
            checkpoint_layers: self.checkpoint_layers,
            attention_block: self.attention_block,
            ce_chunk: self.ce_chunk,
            bf16: self.precision == "bf16",
        }
    }

    /// Warmup steps for a run of `total` steps.
    pub fn warmup(&self, total: u64) -> u64 {
        self.warmup_steps
            .unwrap_or_else(|| (self.warmup_ratio * total as f64).ceil() as u64)
    }
}

impl OutputSection {
    pub fn validate(&self) -> Result<(), String> {
        if crate::checkpoint::safetensors::Dtype::parse(&self.save_dtype).is_none() {
            return Err(format!(
                "[output] save_dtype {:?}: f32, bf16 or f16",
                self.save_dtype
            ));
        }
        if self.save_every == 0 {
            return Err("[output] save_every must be at least 1".into());
        }
        Ok(())
    }
}

/// A config that cannot run, and why.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: PathBuf,
    pub message: String,
}

/// Read a TOML config file and check it with `validate`.
pub fn read_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    validate: impl FnOnce(&T) -> Result<(), String>,
) -> Result<T, ConfigError> {
    let cfg: T = load_toml(path, &[])?;
    validate(&cfg).map_err(|message| ConfigError {
        path: path.to_path_buf(),
        message,
    })?;
    Ok(cfg)
}

/// A TOML config file with `key.path=value` overrides applied (each value is TOML; a bare word
/// is a string), deserialized, not yet validated.
pub fn load_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    overrides: &[String],
) -> Result<T, ConfigError> {
    let err = |message: String| ConfigError {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let mut table: toml::Table =
        toml::from_str(&text).map_err(|e| err(format!("not valid TOML: {e}")))?;
    for o in overrides {
        let Some((key, raw)) = o.split_once('=') else {
            return Err(err(format!("--set {o:?}: expected KEY=VALUE")));
        };
        let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_string()));
        let mut node = &mut table;
        let parts: Vec<&str> = key.trim().split('.').collect();
        for part in &parts[..parts.len() - 1] {
            node = node
                .entry(part.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .ok_or_else(|| err(format!("--set {key}: {part} is not a table")))?;
        }
        node.insert(parts[parts.len() - 1].to_string(), value);
    }
    table
        .try_into()
        .map_err(|e: toml::de::Error| err(format!("invalid config: {e}")))
}

impl CptConfig {
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        read_toml(path.as_ref(), Self::validate)
    }

    pub fn validate(&self) -> Result<(), String> {
        self.model.validate()?;
        self.train.validate()?;
        self.output.validate()?;
        if self.data.seq_len < 2 {
            return Err("[data] seq_len must be at least 2".into());
        }
        let t = &self.train;
        if t.steps.is_none() == t.tokens.is_none() || t.epochs.is_some() {
            return Err(
                "[train]: give exactly one of `steps` or `tokens` (`epochs` is for sft/dpo)".into(),
            );
        }
        self.weights().map(|_| ())
    }

    /// Each corpus's target fraction of training sequences (= of tokens).
    pub fn weights(&self) -> Result<Vec<f64>, String> {
        let d = &self.data;
        if d.corpus.is_empty() {
            return Err("[data]: no [[data.corpus]]".into());
        }
        if !(0.0..=1.0).contains(&d.almr) {
            return Err(format!("[data] almr {} must be in [0, 1]", d.almr));
        }
        let mut names = std::collections::BTreeSet::new();
        for c in &d.corpus {
            if !names.insert(&c.name) {
                return Err(format!("[data]: two corpora named {:?}", c.name));
            }
            if c.weight.is_some_and(|w| !(w > 0.0 && w.is_finite())) {
                return Err(format!("corpus {:?}: weight must be positive", c.name));
            }
            match (c.role, c.fraction) {
                (Role::Domain, Some(f)) if f > 0.0 && f < 1.0 => {}
                (Role::Domain, _) => {
                    return Err(format!(
                        "corpus {:?}: a domain corpus needs a `fraction` in (0, 1)",
                        c.name
                    ))
                }
                (_, Some(_)) => {
                    return Err(format!(
                        "corpus {:?}: `fraction` is for domain corpora; base and additional corpora share by `weight`",
                        c.name
                    ))
                }
                _ => {}
            }
        }
        let domain: f64 = d.corpus.iter().filter_map(|c| c.fraction).sum();
        let base_share = 1.0 - d.almr - domain;
        let role_total = |r: Role| -> f64 {
            d.corpus
                .iter()
                .filter(|c| c.role == r)
                .map(|c| c.weight.unwrap_or(1.0))
                .sum()
        };
        let (base_w, add_w) = (role_total(Role::Base), role_total(Role::Additional));
        if d.almr > 0.0 && add_w == 0.0 {
            return Err(format!(
                "[data] almr {} but no corpus has role = \"additional\"",
                d.almr
            ));
        }
        if base_share < -1e-9 {
            return Err(format!(
                "[data] almr {} plus domain fractions {domain} exceed 1",
                d.almr
            ));
        }
        if base_share > 1e-9 && base_w == 0.0 {
            return Err(format!(
                "[data] {base_share:.4} of the tokens are left for base corpora, but none has role = \"base\""
            ));
        }
        let weights: Vec<f64> = d
            .corpus
            .iter()
            .map(|c| match c.role {
                Role::Base => base_share.max(0.0) * c.weight.unwrap_or(1.0) / base_w,
                Role::Additional => d.almr * c.weight.unwrap_or(1.0) / add_w,
                Role::Domain => c.fraction.unwrap_or(0.0),
            })
            .collect();
        if let Some((c, _)) = d.corpus.iter().zip(&weights).find(|(_, &w)| w <= 0.0) {
            return Err(format!(
                "corpus {:?} gets no tokens at almr {}: remove it or change the mixture",
                c.name, d.almr
            ));
        }
        Ok(weights)
    }

    /// Optimizer steps of the run.
    pub fn total_steps(&self) -> u64 {
        let per_step = (self.train.gbs * self.data.seq_len) as u64;
        self.train
            .steps
            .unwrap_or_else(|| self.train.tokens.unwrap_or(0) / per_step.max(1))
    }

    pub fn warmup_steps(&self) -> u64 {
        self.train.warmup(self.total_steps())
    }

    pub fn adamw(&self) -> AdamWSettings {
        self.train.adamw()
    }

    pub fn memory_plan(&self) -> MemoryPlan {
        self.train.memory_plan()
    }

    /// What a resumed run must share with the run it continues: the data it sees and the
    /// batch geometry. (Learning rates and output settings may change.)
    pub fn resume_key(&self) -> serde_json::Value {
        let corpora: Vec<serde_json::Value> = self
            .data
            .corpus
            .iter()
            .map(|c| serde_json::json!({"name": c.name, "path": c.path, "role": c.role}))
            .collect();
        serde_json::json!({
            "seq_len": self.data.seq_len, "almr": self.data.almr, "seed": self.data.seed,
            "weights": self.weights().unwrap_or_default(), "corpora": corpora,
            "mbs": self.train.mbs, "gbs": self.train.gbs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<CptConfig, String> {
        let text = format!(
            r#"
[model]
config = "m.json"
[data]
seq_len = 16
almr = 0.33
{extra}
[train]
mbs = 2
gbs = 4
steps = 3
lr = 1e-3
[output]
dir = "out"
save_every = 2
"#
        );
        let c: CptConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn mixture_fractions_by_role() {
        let c = config(
            r#"
[[data.corpus]]
name = "en"
path = "d/en"
role = "base"
[[data.corpus]]
name = "zh"
path = "d/zh"
role = "additional"
"#,
        )
        .expect("valid");
        let w = c.weights().expect("weights");
        assert!((w[0] - 0.67).abs() < 1e-12 && (w[1] - 0.33).abs() < 1e-12);
        let c = config(
            r#"
[[data.corpus]]
name = "en"
path = "d/en"
role = "base"
[[data.corpus]]
name = "code"
path = "d/code"
role = "domain"
fraction = 0.1
[[data.corpus]]
name = "zh-web"
path = "d/zh1"
role = "additional"
weight = 3
[[data.corpus]]
name = "zh-books"
path = "d/zh2"
role = "additional"
"#,
        )
        .expect("valid");
        let w = c.weights().expect("weights");
        let want = [0.57, 0.1, 0.33 * 0.75, 0.33 * 0.25];
        for (a, b) in w.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{w:?}");
        }
    }

    #[test]
    fn bad_mixtures_are_explained() {
        let only_base = r#"
[[data.corpus]]
name = "en"
path = "d/en"
role = "base"
"#;
        assert!(config(only_base)
            .expect_err("no additional")
            .contains("additional"));
        let e = config(
            r#"
[[data.corpus]]
name = "zh"
path = "d/zh"
role = "additional"
"#,
        )
        .expect_err("no base");
        assert!(e.contains("base"), "{e}");
        let e = config("[[data.corpus]]\nname = \"x\"\npath = \"p\"\nrole = \"domain\"\n")
            .expect_err("domain without fraction");
        assert!(e.contains("fraction"), "{e}");
        let e = config("bogus = 1\n").expect_err("unknown key");
        assert!(e.contains("bogus"), "{e}");
    }
}
