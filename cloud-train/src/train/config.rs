//! The config sections every training command shares: where the model comes from
//! (`[model]`), how it is optimized and distributed (`[train]`), and where checkpoints and
//! metrics go (`[output]`); and reading a TOML config with `--set` overrides. Relative paths
//! are taken from the working directory, as the commands are run from the project root.

use std::path::{Path, PathBuf};

use crate::device::Backend;
use crate::dist::{DistError, DistSettings, Engine, ZeroStage};
use crate::train::optim::COMPENSATE_BELOW_LR;
use crate::train::{AdamWSettings, Decay, MemoryPlan};

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
    /// Compensated (Kahan) AdamW updates, so that updates below the weights' f32 rounding step
    /// are not lost. Absent: on when `lr` is below `train::optim::COMPENSATE_BELOW_LR` (1e-5).
    pub compensated_update: Option<bool>,
    /// Memory per device, GiB, for the start-up memory plan (absent: the host's for `flex`,
    /// the GPU's as the CUDA driver reports it; see `cloud-train plan`).
    pub device_mem_gib: Option<f64>,
    /// Refuse to start a run whose memory plan does not fit the device (default: true).
    #[serde(default = "yes")]
    pub memory_check: bool,
}

fn yes() -> bool {
    true
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
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.path.is_some() == self.config.is_some() {
            return Err(Invalid::new("[model]: give exactly one of `path` (continue from a checkpoint) or `config` (random init)"));
        }
        Ok(())
    }
}

impl TrainSection {
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.mbs == 0 || self.gbs == 0 || !self.gbs.is_multiple_of(self.mbs) {
            return Err(Invalid(format!(
                "[train] gbs {} must be a positive multiple of mbs {}",
                self.gbs, self.mbs
            )));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) || self.min_lr < 0.0 || self.min_lr > self.lr {
            return Err(Invalid(format!(
                "[train] lr {} must be positive and min_lr {} in [0, lr]",
                self.lr, self.min_lr
            )));
        }
        if !["f32", "bf16"].contains(&self.precision.as_str()) {
            return Err(Invalid(format!(
                "[train] precision {:?}: f32 or bf16",
                self.precision
            )));
        }
        // Stages 2 and 3 are planned (`cloud-train plan`) but refused when a run starts.
        if self.zero_stage > 3 {
            return Err(Invalid(format!(
                "[train] zero_stage {}: 0, 1, 2 or 3",
                self.zero_stage
            )));
        }
        if self
            .device_mem_gib
            .is_some_and(|m| !(m > 0.0 && m.is_finite()))
        {
            return Err(Invalid(format!(
                "[train] device_mem_gib {:?} must be positive",
                self.device_mem_gib
            )));
        }
        if self.collective_timeout_s.is_nan() || self.collective_timeout_s <= 0.0 {
            return Err(Invalid(format!(
                "[train] collective_timeout_s {} must be positive",
                self.collective_timeout_s
            )));
        }
        Ok(())
    }

    /// The distributed settings, or why this build cannot run them (a ZeRO stage it lacks).
    pub fn dist(&self) -> Result<DistSettings, DistError> {
        Ok(DistSettings {
            collective: self.collective,
            zero: ZeroStage::from_stage(self.zero_stage)?,
            collective_timeout_s: self.collective_timeout_s,
        })
    }

    pub fn adamw(&self) -> AdamWSettings {
        AdamWSettings {
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            weight_decay: self.weight_decay,
            decay_norms: self.decay_norms,
            compensated: self
                .compensated_update
                .unwrap_or(self.lr < COMPENSATE_BELOW_LR),
        }
    }

    /// A warning for a learning rate whose plain f32 updates are partly lost, when compensated
    /// updates were turned off.
    pub fn tiny_lr_warning(&self) -> Option<String> {
        (self.compensated_update == Some(false) && self.lr < COMPENSATE_BELOW_LR).then(|| {
            format!(
                "[train] lr {:e} with compensated_update = false: plain f32 updates this small are \
                 rounded away on most weights (see the README, \"Tiny learning rates\"); leave \
                 compensated_update unset or true",
                self.lr
            )
        })
    }

    pub fn memory_plan(&self) -> MemoryPlan {
        MemoryPlan {
            checkpoint_layers: self.recomputes_layers(),
            attention_block: self.attention_block,
            ce_chunk: self.ce_chunk,
            bf16: self.precision == "bf16",
        }
    }

    /// Layers are recomputed in backward: `checkpoint_layers`, or ZeRO-3 (whose passes hold one
    /// gathered layer at a time).
    pub fn recomputes_layers(&self) -> bool {
        self.checkpoint_layers || self.zero_stage >= 3
    }

    /// Warmup steps for a run of `total` steps.
    pub fn warmup(&self, total: u64) -> u64 {
        self.warmup_steps
            .unwrap_or_else(|| (self.warmup_ratio * total as f64).ceil() as u64)
    }
}

impl OutputSection {
    pub fn validate(&self) -> Result<(), Invalid> {
        if crate::checkpoint::safetensors::Dtype::parse(&self.save_dtype).is_none() {
            return Err(Invalid(format!(
                "[output] save_dtype {:?}: f32, bf16 or f16",
                self.save_dtype
            )));
        }
        if self.save_every == 0 {
            return Err(Invalid::new("[output] save_every must be at least 1"));
        }
        Ok(())
    }
}

/// The sections every training config has (what the run harness reads).
#[derive(Clone, Copy)]
pub struct RunSections<'a> {
    pub model: &'a ModelSection,
    pub train: &'a TrainSection,
    pub output: &'a OutputSection,
}

impl<'a> RunSections<'a> {
    pub fn new(
        model: &'a ModelSection,
        train: &'a TrainSection,
        output: &'a OutputSection,
    ) -> Self {
        Self {
            model,
            train,
            output,
        }
    }

    /// The checks every training command shares.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.model.validate()?;
        self.train.validate()?;
        self.output.validate()
    }
}

/// A training command's config: the shared sections and its own.
pub trait RunConfig: serde::de::DeserializeOwned {
    fn sections(&self) -> RunSections<'_>;
    /// The checks of the command's own sections.
    fn validate_own(&self) -> Result<(), Invalid>;

    fn validate(&self) -> Result<(), Invalid> {
        self.sections().validate()?;
        self.validate_own()
    }

    /// Read and check a config file.
    fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        read_toml(path.as_ref(), Self::validate)
    }

    /// Read a config file with `--set` overrides applied, and check it.
    fn load(path: &Path, overrides: &[String]) -> Result<Self, ConfigError> {
        load_checked(path, overrides, Self::validate)
    }
}

/// What is wrong with a config's values (the file is named by [`ConfigError`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// A config file that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not valid TOML: {message}", path.display())]
    Toml { path: PathBuf, message: String },
    #[error("{}: --set {arg:?}: {message}", path.display())]
    Override {
        path: PathBuf,
        arg: String,
        message: String,
    },
    #[error("{}: invalid config: {message}", path.display())]
    Schema { path: PathBuf, message: String },
    #[error("{}: {invalid}", path.display())]
    Invalid { path: PathBuf, invalid: Invalid },
}

impl ConfigError {
    /// `invalid` found in the config file at `path`.
    pub fn invalid(path: &Path, invalid: Invalid) -> Self {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            invalid,
        }
    }
}

/// Read a TOML config file and check it with `validate`.
pub fn read_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    validate: impl FnOnce(&T) -> Result<(), Invalid>,
) -> Result<T, ConfigError> {
    load_checked(path, &[], validate)
}

/// [`load_toml`], then `validate`.
pub fn load_checked<T: serde::de::DeserializeOwned>(
    path: &Path,
    overrides: &[String],
    validate: impl FnOnce(&T) -> Result<(), Invalid>,
) -> Result<T, ConfigError> {
    let cfg: T = load_toml(path, overrides)?;
    validate(&cfg).map_err(|invalid| ConfigError::invalid(path, invalid))?;
    Ok(cfg)
}

/// A TOML config file with `key.path=value` overrides applied (each value is TOML; a bare word
/// is a string), deserialized, not yet validated.
pub fn load_toml<T: serde::de::DeserializeOwned>(
    path: &Path,
    overrides: &[String],
) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Toml {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    for o in overrides {
        let bad = |message: String| ConfigError::Override {
            path: path.to_path_buf(),
            arg: o.clone(),
            message,
        };
        let Some((key, raw)) = o.split_once('=') else {
            return Err(bad("expected KEY=VALUE".into()));
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
                .ok_or_else(|| bad(format!("{part} is not a table")))?;
        }
        node.insert(parts[parts.len() - 1].to_string(), value);
    }
    table
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Schema {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}
