//! Run directories: numbered checkpoints (HF weights + optimizer state + trainer state), found
//! again on resume, pruned to the last K; and the metrics file, cut back to a checkpoint's
//! step when a run resumes from it.

use std::io::Write;
use std::path::{Path, PathBuf};

use llama_spec::LlamaConfig;

use super::config::{ModelSection, OutputSection};
use super::error::TrainError;
use crate::checkpoint::{self, safetensors::Dtype, shards, SaveOptions};
use crate::dist::DataParallel;
use crate::model::Llama;

/// How to treat an output directory that already holds checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Continue from the newest checkpoint there, if any.
    Auto,
    /// Continue from this checkpoint directory.
    From(PathBuf),
    /// Start over; refused if the output directory has checkpoints.
    Never,
}

pub const TRAINER_STATE: &str = "trainer_state.json";
pub const OPTIMIZER: &str = "optimizer.safetensors";
pub const METRICS: &str = "metrics.jsonl";
const PREFIX: &str = "checkpoint-";

/// Everything besides weights and moments needed to continue a run exactly.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainerState {
    pub format: String,
    /// Optimizer steps done.
    pub step: u64,
    pub tokens: u64,
    /// Sequences drawn by the mixer, and per corpus.
    pub sequences: u64,
    pub mixer_counts: Vec<u64>,
    /// AdamW's step count (bias correction).
    pub adam_step: u64,
    /// Wall time of the run so far (all its pieces).
    pub elapsed_s: f64,
    /// The objective's `resume_key`: a resumed run must match it.
    pub resume_key: serde_json::Value,
    /// The save dtype of the weights (a BF16 save does not resume bit-exactly).
    pub weights_dtype: String,
    /// The learning-rate schedule in force (a function of `step`, so no other state).
    #[serde(default)]
    pub schedule: serde_json::Value,
}

pub const STATE_FORMAT: &str = "cloud-train-cpt/1";

impl TrainerState {
    /// The state of a run that has not taken a step.
    pub fn fresh(resume_key: serde_json::Value, weights_dtype: &str) -> Self {
        Self {
            format: STATE_FORMAT.into(),
            step: 0,
            tokens: 0,
            sequences: 0,
            mixer_counts: Vec::new(),
            adam_step: 0,
            elapsed_s: 0.0,
            resume_key,
            weights_dtype: weights_dtype.to_string(),
            schedule: serde_json::Value::Null,
        }
    }
}

/// The checkpoint a run continues from, if any: the newest in `out` (`Auto`), the one given,
/// or none (`Never`, refused when `out` has checkpoints, so that no run is silently mixed).
pub fn resume_from(out: &Path, resume: Resume) -> Result<Option<PathBuf>, TrainError> {
    let existing = checkpoints(out);
    Ok(match resume {
        Resume::Auto => existing.last().map(|(_, p)| p.clone()),
        Resume::From(p) => Some(p),
        Resume::Never if !existing.is_empty() => {
            return Err(TrainError::resume(
                out,
                format!(
                    "already has checkpoints (newest {}): resume (the default) or choose another output dir",
                    existing.last().map(|(_, p)| p.display().to_string()).unwrap_or_default()
                ),
            ))
        }
        Resume::Never => None,
    })
}

/// The starting model of a run: `[model] path` loaded, or `[model] config` randomly
/// initialized with `init_seed`.
pub fn starting_model(
    model: &ModelSection,
    device: &burn::prelude::Device,
) -> Result<(Llama, LlamaConfig), TrainError> {
    match (&model.path, &model.config) {
        (Some(p), _) => Ok(checkpoint::load(p, device)?),
        (None, Some(c)) => {
            let config = LlamaConfig::from_file(c)?;
            Ok((Llama::init(&config, model.init_seed, device), config))
        }
        (None, None) => {
            Err(crate::train::config::Invalid::new("[model]: no path or config").into())
        }
    }
}

/// The model's config, without its weights: checkpoint `from`'s, else the `[model]` source's.
pub fn model_config(model: &ModelSection, from: Option<&Path>) -> Result<LlamaConfig, TrainError> {
    let file = match (from, model.path.as_deref(), &model.config) {
        (Some(dir), _, _) | (None, Some(dir), _) => dir.join("config.json"),
        (None, None, Some(c)) => c.clone(),
        (None, None, None) => {
            return Err(crate::train::config::Invalid::new("[model]: no path or config").into())
        }
    };
    Ok(LlamaConfig::from_file(file)?)
}

pub fn checkpoint_dir(out: &Path, step: u64) -> PathBuf {
    out.join(format!("{PREFIX}{step:06}"))
}

/// Complete checkpoints in `out` (with a trainer state), oldest first.
pub fn checkpoints(out: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(out) else {
        return Vec::new();
    };
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_string();
            let step = name.strip_prefix(PREFIX)?.parse().ok()?;
            p.join(TRAINER_STATE).is_file().then_some((step, p))
        })
        .collect();
    found.sort();
    found
}

pub fn read_state(dir: &Path) -> Result<TrainerState, TrainError> {
    let p = dir.join(TRAINER_STATE);
    let text = std::fs::read_to_string(&p).map_err(TrainError::io(&p))?;
    let s: TrainerState =
        serde_json::from_str(&text).map_err(|e| TrainError::resume(&p, e.to_string()))?;
    if s.format != STATE_FORMAT {
        return Err(TrainError::resume(
            &p,
            format!("format {:?}, this build reads {STATE_FORMAT:?}", s.format),
        ));
    }
    Ok(s)
}

/// Remove the oldest checkpoints so that `keep` remain.
pub fn prune(out: &Path, keep: usize) -> std::io::Result<()> {
    let all = checkpoints(out);
    let excess = all.len().saturating_sub(keep.max(1));
    for (_, dir) in &all[..excess] {
        std::fs::remove_dir_all(dir)?;
    }
    Ok(())
}

/// Keep the metrics lines of steps up to `step` (a resumed run writes the later ones again).
pub fn truncate_metrics(path: &Path, step: u64) -> std::io::Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s <= step)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    llama_spec::atomic::write_atomic(path, kept.as_bytes())
}

/// Appends one JSON object per line, flushed at once (a killed run loses no finished step).
pub struct MetricsWriter {
    file: std::fs::File,
    path: PathBuf,
}

impl MetricsWriter {
    pub fn open(path: &Path) -> Result<Self, TrainError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(TrainError::io(path))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn write(&mut self, line: &serde_json::Value) -> Result<(), TrainError> {
        writeln!(self.file, "{line}").map_err(TrainError::io(&self.path))
    }
}

/// How checkpoints of a run are written: its save dtype, the tokenizer files of the starting
/// model (or `[model] tokenizer`), and `extra` files.
pub fn save_options(
    model: &ModelSection,
    output: &OutputSection,
    extra: Vec<(String, Vec<u8>)>,
) -> Result<SaveOptions, TrainError> {
    let dtype = Dtype::parse(&output.save_dtype).ok_or_else(|| {
        crate::train::config::Invalid(format!("[output] save_dtype {:?}", output.save_dtype))
    })?;
    let mut opts = SaveOptions {
        dtype,
        tokenizer_from: model.path.clone(),
        extra_files: extra,
        ..SaveOptions::default()
    };
    if let Some(t) = &model.tokenizer {
        let bytes = std::fs::read(t).map_err(TrainError::io(t))?;
        opts.extra_files.push(("tokenizer.json".into(), bytes));
    }
    Ok(opts)
}

/// `trainer_state.json` into a checkpoint's staging directory.
fn write_trainer_state(
    staging: &Path,
    trainer: &TrainerState,
) -> Result<(), crate::CheckpointError> {
    let json = serde_json::to_string_pretty(trainer).unwrap_or_default();
    let p = staging.join(TRAINER_STATE);
    llama_spec::atomic::write_atomic(&p, format!("{json}\n").as_bytes())
        .map_err(|source| crate::CheckpointError::Io { path: p, source })
}

/// Write checkpoint `out/checkpoint-<step>`: weights, optimizer state (written by
/// `save_optimizer` to the path it is given), trainer state.
pub fn save(
    model: &Llama,
    config: &LlamaConfig,
    save_optimizer: impl FnOnce(&Path) -> Result<(), crate::CheckpointError>,
    trainer: &TrainerState,
    out: &Path,
    opts: &SaveOptions,
) -> Result<PathBuf, TrainError> {
    let dir = checkpoint_dir(out, trainer.step);
    checkpoint::save_with(model, config, &dir, opts, |staging| {
        save_optimizer(&staging.join(OPTIMIZER))?;
        write_trainer_state(staging, trainer)
    })?;
    link_latest(out, &dir)?;
    Ok(dir)
}

/// How many collective timeouts a rank may wait while a checkpoint is written.
pub const SAVE_PATIENCE: u32 = 10;

/// [`save`] in a data-parallel run: rank 0 writes the checkpoint (and prunes to `keep_last`),
/// every rank takes part in gathering a sharded optimizer state. Returns the checkpoint dir.
pub fn save_ranked(
    model: &Llama,
    config: &LlamaConfig,
    dp: &DataParallel,
    trainer: &TrainerState,
    out: &Path,
    opts: &SaveOptions,
    keep_last: usize,
) -> Result<PathBuf, TrainError> {
    // The other ranks wait while rank 0 writes the weights (minutes for 8B): not a hang.
    dp.comm().set_patience(SAVE_PATIENCE);
    let result = if dp.shard_parts().is_some() {
        save_sharded(model, config, dp, trainer, out, opts, keep_last)
    } else if dp.is_main() {
        save(
            model,
            config,
            |path| dp.save_optimizer(model, Some(path)),
            trainer,
            out,
            opts,
        )
        .and_then(|dir| {
            prune(out, keep_last).map_err(TrainError::io(out))?;
            Ok(dir)
        })
    } else {
        dp.save_optimizer(model, None)
            .map(|()| checkpoint_dir(out, trainer.step))
            .map_err(TrainError::from)
    };
    // Every rank leaves the save together, so the wait for rank 0 is covered here too.
    let synced = dp.comm().barrier();
    dp.comm().set_patience(1);
    let dir = result?;
    synced?;
    Ok(dir)
}

/// ZeRO-1 to 3: every rank writes its part of the AdamW state (and, ZeRO-3, of the parameters;
/// f32) into a side directory, then rank 0 writes the new checkpoint: the HF weights (unless
/// ZeRO-3), the shards moved in with their manifest, the config, the tokenizer files and the
/// trainer state; it appears at once.
fn save_sharded(
    model: &Llama,
    config: &LlamaConfig,
    dp: &DataParallel,
    trainer: &TrainerState,
    out: &Path,
    opts: &SaveOptions,
    keep_last: usize,
) -> Result<PathBuf, TrainError> {
    let dir = checkpoint_dir(out, trainer.step);
    let side = out.join(format!(".{}.shards", PREFIX.trim_end_matches('-')));
    let prepared = if dp.is_main() && side.exists() {
        std::fs::remove_dir_all(&side).map_err(TrainError::io(&side))
    } else {
        Ok(())
    };
    dp.comm().barrier()?;
    let parts = dp
        .shard_parts()
        .unwrap_or_else(|| unreachable!("a sharded optimizer has parts"));
    let wrote = prepared.and_then(|()| {
        shards::write_shard(&side, dp.rank(), dp.world(), &parts.parts)?;
        Ok(())
    });
    // Rank 0 writes the manifest only once every rank's file is there.
    dp.comm().barrier()?;
    wrote?;
    if !dp.is_main() {
        return Ok(dir);
    }
    let params = dp.shards_params();
    let mut state = trainer.clone();
    let weights = if params {
        // The shards are f32 whatever `save_dtype` says: a resume from them is exact.
        state.weights_dtype = "f32".into();
        None
    } else {
        Some(checkpoint::weights_writer(model, config, &dir, opts)?)
    };
    llama_spec::hf::write_checkpoint_dir(
        &dir,
        config,
        opts,
        |staging| {
            if let Some(write) = weights {
                write(staging)?;
            }
            let target = staging.join(shards::SHARDS);
            std::fs::rename(&side, &target).map_err(crate::CheckpointError::io(&target))?;
            shards::write_manifest(&target, dp.world(), parts.shapes.clone(), params)
        },
        |staging| write_trainer_state(staging, &state),
    )?;
    link_latest(out, &dir)?;
    prune(out, keep_last).map_err(TrainError::io(out))?;
    Ok(dir)
}

/// Point `out/latest` at the newest checkpoint (a relative symlink, replaced atomically), so
/// that the next stage's config can name `runs/<stage>/latest`.
fn link_latest(out: &Path, dir: &Path) -> Result<(), TrainError> {
    #[cfg(unix)]
    {
        let name = dir.file_name().unwrap_or_default();
        let tmp = out.join(format!(".latest.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(name, &tmp)
            .and_then(|()| std::fs::rename(&tmp, out.join("latest")))
            .map_err(TrainError::io(out.join("latest")))?;
    }
    #[cfg(not(unix))]
    let _ = (out, dir);
    Ok(())
}
