//! HF checkpoint directories: `config.json`, `model.safetensors` or sharded
//! `model-0000i-of-0000n.safetensors` with `model.safetensors.index.json` (F32, F16 or BF16),
//! and the tokenizer files beside them. Shared by the trainer (burn parameters in and out), the
//! quantizer (`convert` reads one, `to-hf` writes one) and their tests.
//!
//! Reading maps the shards and decodes one tensor at a time. Writing builds a complete new
//! directory beside the target and renames it into place, so an interrupted save never leaves
//! a mixed or partial checkpoint.

pub mod safetensors;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::atomic::{staging_dir, swap_dir, write_atomic};
use crate::names::TensorName;
use crate::LlamaConfig;
use safetensors::{Dtype, SafetensorsFile, TensorEntry};

/// What went wrong with which file.
#[derive(Debug, thiserror::Error)]
pub enum HfError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

impl HfError {
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        HfError::Format {
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| HfError::Io { path, source }
    }
}

const INDEX: &str = "model.safetensors.index.json";
const SINGLE: &str = "model.safetensors";
/// Files copied along when a checkpoint is written from another one.
pub const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
];

/// Tensors that HF checkpoints may carry and that the model recomputes.
fn ignorable(name: &str) -> bool {
    name.ends_with("rotary_emb.inv_freq")
}

/// An opened HF checkpoint directory: its config and mmap'd shards.
pub struct HfCheckpoint {
    pub dir: PathBuf,
    pub config: LlamaConfig,
    shards: Vec<SafetensorsFile>,
    /// Tensor name -> index into `shards`.
    location: BTreeMap<String, usize>,
}

impl HfCheckpoint {
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, HfError> {
        let dir = dir.as_ref().to_path_buf();
        let config = LlamaConfig::from_file(dir.join("config.json"))?;
        let index_path = dir.join(INDEX);
        let shard_names: Vec<String> = if index_path.exists() {
            read_index(&index_path)?
        } else if dir.join(SINGLE).exists() {
            vec![SINGLE.to_string()]
        } else {
            return Err(HfError::format(
                &dir,
                format!("no {SINGLE} and no {INDEX}: not an HF safetensors checkpoint"),
            ));
        };
        let mut shards = Vec::with_capacity(shard_names.len());
        let mut location = BTreeMap::new();
        for (i, name) in shard_names.iter().enumerate() {
            let path = dir.join(name);
            if !path.exists() {
                return Err(HfError::format(
                    &path,
                    format!("shard listed in {INDEX} is missing"),
                ));
            }
            let shard = SafetensorsFile::open(&path)?;
            for t in shard.tensors.keys() {
                if location.insert(t.clone(), i).is_some() {
                    return Err(HfError::format(
                        &path,
                        format!("tensor {t} also appears in another shard"),
                    ));
                }
            }
            shards.push(shard);
        }
        Ok(Self {
            dir,
            config,
            shards,
            location,
        })
    }

    /// The tensor names the checkpoint holds.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.location.keys().map(String::as_str)
    }

    fn entry(
        &self,
        name: &str,
        expect: &[usize],
    ) -> Result<(&SafetensorsFile, &TensorEntry), HfError> {
        let shard = self
            .location
            .get(name)
            .map(|&i| &self.shards[i])
            .ok_or_else(|| HfError::format(&self.dir, format!("tensor {name} is missing")))?;
        let entry = &shard.tensors[name];
        if entry.shape != expect {
            return Err(HfError::format(
                shard.path(),
                format!(
                    "tensor {name} has shape {:?}, config.json implies {expect:?}",
                    entry.shape
                ),
            ));
        }
        Ok((shard, entry))
    }

    /// One tensor decoded to f32 (row-major, HF shape), after checking its shape.
    pub fn tensor_f32(&self, name: &str, expect: &[usize]) -> Result<(Vec<f32>, Dtype), HfError> {
        let (shard, entry) = self.entry(name, expect)?;
        let mut out = Vec::new();
        entry.dtype.to_f32(shard.bytes(entry), &mut out);
        shard.release(entry);
        Ok((out, entry.dtype))
    }

    /// One tensor's stored bytes (row-major, HF shape) and their type, after checking its
    /// shape: for reading a large tensor a few rows at a time.
    pub fn tensor_bytes(&self, name: &str, expect: &[usize]) -> Result<(&[u8], Dtype), HfError> {
        let (shard, entry) = self.entry(name, expect)?;
        Ok((shard.bytes(entry), entry.dtype))
    }

    /// Drop the pages of bytes `part` of tensor `name` from this process's memory (rows read
    /// and done with); later reads fault them back in from the file.
    pub fn release_part(&self, name: &str, part: std::ops::Range<usize>) {
        if let Some(&i) = self.location.get(name) {
            let shard = &self.shards[i];
            shard.release_part(&shard.tensors[name], part);
        }
    }
}

fn read_index(path: &Path) -> Result<Vec<String>, HfError> {
    let text = std::fs::read_to_string(path).map_err(HfError::io(path))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| HfError::format(path, format!("not JSON: {e}")))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| HfError::format(path, "no weight_map object"))?;
    let mut shards: Vec<String> = Vec::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| {
            HfError::format(path, format!("weight_map[{tensor}] is not a file name"))
        })?;
        if file.contains('/') || file.contains('\\') || file.starts_with('.') {
            return Err(HfError::format(
                path,
                format!("weight_map[{tensor}] = {file:?} leaves the checkpoint directory"),
            ));
        }
        if !shards.iter().any(|s| s == file) {
            shards.push(file.to_string());
        }
    }
    shards.sort();
    Ok(shards)
}

/// The tensors of a model with this config, in HF order, with their HF shapes.
pub fn hf_tensors(c: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    TensorName::all(c)
        .into_iter()
        .filter_map(|t| {
            let name = t.hf()?;
            let shape = t.hf_shape(c).into_iter().map(|d| d as usize).collect();
            Some((name, shape))
        })
        .collect()
}

impl HfCheckpoint {
    /// Every tensor must be one this config expects (or one HF may carry and we recompute).
    pub fn check_names(&self) -> Result<(), HfError> {
        let c = &self.config;
        let expected = hf_tensors(c);
        for name in self.names() {
            let known = expected.iter().any(|(n, _)| n == name)
                || ignorable(name)
                || (c.tie_word_embeddings && name == "lm_head.weight");
            if !known {
                return Err(HfError::format(
                    &self.dir,
                    format!("unexpected tensor {name} for this config.json (not a Llama layout?)"),
                ));
            }
        }
        Ok(())
    }
}

/// How to write a checkpoint.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub dtype: Dtype,
    /// Largest shard in bytes (a tensor larger than this gets a shard of its own).
    pub max_shard_bytes: u64,
    /// Copy the tokenizer files ([`TOKENIZER_FILES`]) from this directory when present.
    pub tokenizer_from: Option<PathBuf>,
    /// More files to write beside the weights (name, bytes), e.g. a rebuilt `tokenizer.json`.
    pub extra_files: Vec<(String, Vec<u8>)>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            dtype: Dtype::BF16,
            max_shard_bytes: 5 << 30,
            tokenizer_from: None,
            extra_files: Vec::new(),
        }
    }
}

/// Write an HF checkpoint of `config` to `out` (replacing a previous checkpoint there, never
/// another kind of folder). `fetch(name)` gives each tensor's row-major f32 values, in HF order,
/// one at a time.
pub fn write_checkpoint(
    out: &Path,
    config: &LlamaConfig,
    opts: &WriteOptions,
    fetch: impl FnMut(&str) -> Result<Vec<f32>, HfError>,
) -> Result<(), HfError> {
    write_checkpoint_with(out, config, opts, fetch, |_| Ok(()))
}

/// [`write_checkpoint`], and `extra(staging_dir)` writes more files (a trainer's optimizer
/// state, say) into the new directory before it replaces `out`, so that they appear together.
pub fn write_checkpoint_with(
    out: &Path,
    config: &LlamaConfig,
    opts: &WriteOptions,
    fetch: impl FnMut(&str) -> Result<Vec<f32>, HfError>,
    extra: impl FnOnce(&Path) -> Result<(), HfError>,
) -> Result<(), HfError> {
    write_checkpoint_dir(
        out,
        config,
        opts,
        |staging| write_weights(staging, config, opts, fetch),
        extra,
    )
}

/// The weights of an HF checkpoint into directory `dir`: `model.safetensors`, or shards of at
/// most `opts.max_shard_bytes` and their index, each tensor's values from `fetch(name)`, in
/// [`hf_tensors`] order.
pub fn write_weights(
    dir: &Path,
    config: &LlamaConfig,
    opts: &WriteOptions,
    mut fetch: impl FnMut(&str) -> Result<Vec<f32>, HfError>,
) -> Result<(), HfError> {
    let tensors = hf_tensors(config);
    // Plan shards in order, greedily, under the size limit.
    let mut shards: Vec<Vec<(String, Vec<usize>)>> = vec![Vec::new()];
    let mut size = 0u64;
    for (name, shape) in tensors {
        let bytes = (shape.iter().product::<usize>() * opts.dtype.size()) as u64;
        if size > 0 && size + bytes > opts.max_shard_bytes {
            shards.push(Vec::new());
            size = 0;
        }
        size += bytes;
        if let Some(last) = shards.last_mut() {
            last.push((name, shape));
        }
    }
    let n = shards.len();
    let mut weight_map = serde_json::Map::new();
    let mut total = 0u64;
    for (i, shard) in shards.iter().enumerate() {
        let file = if n == 1 {
            SINGLE.to_string()
        } else {
            format!("model-{:05}-of-{n:05}.safetensors", i + 1)
        };
        for (name, shape) in shard {
            weight_map.insert(name.clone(), file.clone().into());
            total += (shape.iter().product::<usize>() * opts.dtype.size()) as u64;
        }
        let mut buf = Vec::new();
        safetensors::write(&dir.join(&file), opts.dtype, shard, |name| {
            let values = fetch(name)?;
            opts.dtype.from_f32(&values, &mut buf);
            Ok(std::mem::take(&mut buf))
        })?;
    }
    if n > 1 {
        let index = serde_json::json!({
            "metadata": { "total_size": total },
            "weight_map": weight_map,
        });
        let p = dir.join(INDEX);
        write_atomic(&p, format!("{index:#}\n").as_bytes()).map_err(HfError::io(&p))?;
    }
    Ok(())
}

/// A checkpoint directory written atomically: `weights(staging_dir)` writes the weights in
/// whatever layout (HF safetensors, or a trainer's per-rank shards), then the config (with
/// `torch_dtype`), the tokenizer files and `opts.extra_files`, then `extra(staging_dir)`, and
/// the directory replaces `out`.
pub fn write_checkpoint_dir(
    out: &Path,
    config: &LlamaConfig,
    opts: &WriteOptions,
    weights: impl FnOnce(&Path) -> Result<(), HfError>,
    extra: impl FnOnce(&Path) -> Result<(), HfError>,
) -> Result<(), HfError> {
    let staging = staging_dir(out, "tmp").map_err(HfError::io(out))?;
    let result = (|| {
        weights(&staging)?;
        let mut cfg = config.clone();
        cfg.extra.insert(
            "torch_dtype".into(),
            match opts.dtype {
                Dtype::F32 => "float32",
                Dtype::F16 => "float16",
                Dtype::BF16 => "bfloat16",
            }
            .into(),
        );
        cfg.extra.remove("dtype");
        let p = staging.join("config.json");
        write_atomic(&p, format!("{}\n", cfg.to_json()).as_bytes()).map_err(HfError::io(&p))?;
        if let Some(src) = &opts.tokenizer_from {
            for f in TOKENIZER_FILES {
                let from = src.join(f);
                if from.exists() {
                    let bytes = std::fs::read(&from).map_err(HfError::io(&from))?;
                    let p = staging.join(f);
                    write_atomic(&p, &bytes).map_err(HfError::io(&p))?;
                }
            }
        }
        for (name, bytes) in &opts.extra_files {
            let p = staging.join(name);
            write_atomic(&p, bytes).map_err(HfError::io(&p))?;
        }
        extra(&staging)?;
        swap_dir(&staging, out, "config.json").map_err(HfError::io(out))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}
