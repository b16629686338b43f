//! HF checkpoints in and out of the burn model (the directory format itself is
//! `llama_spec::hf`): loading streams one tensor at a time from the mmap'd shards into the
//! parameters, so the weights are never held twice; saving writes a new directory atomically.

pub mod shards;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::prelude::*;
pub use llama_spec::hf::safetensors;
pub use llama_spec::hf::{hf_tensors, HfCheckpoint, WriteOptions as SaveOptions, TOKENIZER_FILES};
use llama_spec::names::{LayerTensor, TensorName};
use llama_spec::LlamaConfig;

use crate::error::CheckpointError;
pub use crate::model::params::{named_params, ParamValue};
use crate::model::{Block, Dims, Llama};

/// Load a checkpoint directory into a model on `device` (without autodiff; call
/// `Module::train` to train it): HF safetensors, or a trainer's shards ([`shards`]).
pub fn load(
    dir: impl AsRef<Path>,
    device: &Device,
) -> Result<(Llama, LlamaConfig), CheckpointError> {
    let reader = PartReader::open(dir.as_ref())?;
    let model = build_with(&reader.config, device, |name, shape| {
        let whole = reader.part(name, shape, 0..shape.iter().product())?;
        Ok((whole, shape.to_vec()))
    })?;
    Ok((model, reader.config))
}

/// A ZeRO-3 shell of config `c`: every parameter a placeholder of one element per row (1-D:
/// one element), so that row counts read true; the values live in the ranks' parts.
pub fn shell(c: &LlamaConfig, device: &Device) -> Llama {
    let hollow = |_: &str, shape: &[usize]| {
        let dims = if shape.len() == 1 {
            vec![1]
        } else {
            vec![shape[0], 1]
        };
        Ok((vec![0f32; dims.iter().product()], dims))
    };
    match build_with(c, device, hollow) {
        Ok(model) => model,
        Err(e) => unreachable!("placeholders need no file: {e}"),
    }
}

/// The model of config `c`, each tensor's values and dimensions from `fetch(hf name, shape)`.
fn build_with(
    c: &LlamaConfig,
    device: &Device,
    fetch: impl Fn(&str, &[usize]) -> Result<(Vec<f32>, Vec<usize>), CheckpointError>,
) -> Result<Llama, CheckpointError> {
    let p1 = |name: &str, shape: &[usize]| -> Result<Param<Tensor<1>>, CheckpointError> {
        let (v, d) = fetch(name, shape)?;
        Ok(Param::from_data(TensorData::new(v, [d[0]]), device))
    };
    let p2 = |name: &str, shape: &[usize]| -> Result<Param<Tensor<2>>, CheckpointError> {
        let (v, d) = fetch(name, shape)?;
        Ok(Param::from_data(TensorData::new(v, [d[0], d[1]]), device))
    };
    let shape =
        |t: TensorName| -> Vec<usize> { t.hf_shape(c).into_iter().map(|d| d as usize).collect() };
    let named = |t: TensorName| (t.hf().unwrap_or_default(), shape(t));
    let mut layers = Vec::with_capacity(c.num_hidden_layers as usize);
    for i in 0..c.num_hidden_layers {
        let l = |t: LayerTensor| named(TensorName::Layer(i, t));
        let one = |t| {
            let (n, s) = l(t);
            p1(&n, &s)
        };
        let two = |t| {
            let (n, s) = l(t);
            p2(&n, &s)
        };
        layers.push(Block {
            input_layernorm: one(LayerTensor::AttnNorm)?,
            q_proj: two(LayerTensor::AttnQ)?,
            k_proj: two(LayerTensor::AttnK)?,
            v_proj: two(LayerTensor::AttnV)?,
            o_proj: two(LayerTensor::AttnOutput)?,
            post_attention_layernorm: one(LayerTensor::FfnNorm)?,
            gate_proj: two(LayerTensor::FfnGate)?,
            up_proj: two(LayerTensor::FfnUp)?,
            down_proj: two(LayerTensor::FfnDown)?,
        });
    }
    let (n, s) = named(TensorName::TokenEmbd);
    let embed_tokens = p2(&n, &s)?;
    let (n, s) = named(TensorName::OutputNorm);
    let norm = p1(&n, &s)?;
    let lm_head = if c.tie_word_embeddings {
        None
    } else {
        let (n, s) = named(TensorName::Output);
        Some(p2(&n, &s)?)
    };
    Ok(Llama {
        embed_tokens,
        layers,
        norm,
        lm_head,
        dims: Dims::new(c),
    })
}

/// Reads a checkpoint's weights (HF files or ZeRO-3 shards) tensor by tensor, whole or one
/// rank's part (a ZeRO-3 start reads only its parts, without building the model).
pub struct PartReader {
    pub config: LlamaConfig,
    files: Weights,
}

enum Weights {
    Hf(HfCheckpoint),
    Shards(shards::ShardedCheckpoint),
}

impl PartReader {
    pub fn open(dir: &Path) -> Result<Self, CheckpointError> {
        // Weights in the shards (ZeRO-3); earlier stages keep them in the HF files. A damaged
        // manifest is an error here, not a reason to look for HF files instead.
        if shards::is_sharded(dir) {
            let sharded = shards::ShardedCheckpoint::open(dir)?;
            if sharded.manifest.params {
                return Ok(Self {
                    config: LlamaConfig::from_file(dir.join("config.json"))?,
                    files: Weights::Shards(sharded),
                });
            }
        }
        let ckpt = HfCheckpoint::open(dir)?;
        ckpt.check_names()?;
        Ok(Self {
            config: ckpt.config.clone(),
            files: Weights::Hf(ckpt),
        })
    }

    /// Values `range` of tensor `name` (of shape `shape`), row-major.
    pub fn part(
        &self,
        name: &str,
        shape: &[usize],
        range: std::ops::Range<usize>,
    ) -> Result<Vec<f32>, CheckpointError> {
        let (whole, path) = match &self.files {
            Weights::Hf(ckpt) => (ckpt.tensor_f32(name, shape)?.0, ckpt.dir.as_path()),
            Weights::Shards(s) => (
                s.read(name)?.ok_or_else(|| {
                    CheckpointError::format(s.path(), format!("no tensor {name}"))
                })?,
                s.path(),
            ),
        };
        if whole.len() != shape.iter().product::<usize>() || range.end > whole.len() {
            return Err(CheckpointError::format(
                path,
                format!(
                    "{name}: {} values, the config's shape is {shape:?}",
                    whole.len()
                ),
            ));
        }
        Ok(if range.len() == whole.len() {
            whole
        } else {
            whole[range].to_vec()
        })
    }
}

/// Named f32 tensors of a saved optimizer state: one safetensors file (by HF name, full
/// shapes), or a sharded checkpoint's parts assembled.
pub enum StateFile {
    One(PathBuf, llama_spec::hf::safetensors::SafetensorsFile),
    Shards(shards::ShardedCheckpoint),
}

impl StateFile {
    /// `path`: a safetensors file, or a sharded checkpoint's directory.
    pub fn open(path: &Path) -> Result<Self, CheckpointError> {
        if shards::is_sharded(path) {
            return Ok(StateFile::Shards(shards::ShardedCheckpoint::open(path)?));
        }
        let file = llama_spec::hf::safetensors::SafetensorsFile::open(path)?;
        Ok(StateFile::One(path.to_path_buf(), file))
    }

    /// Where the state is (for error messages).
    pub fn path(&self) -> &Path {
        match self {
            StateFile::One(p, _) => p,
            StateFile::Shards(s) => s.path(),
        }
    }

    /// Tensor `key` whole, `None` if the state has none.
    pub fn read(&self, key: &str) -> Result<Option<Vec<f32>>, CheckpointError> {
        match self {
            StateFile::One(_, file) => Ok(file.tensors.get(key).map(|entry| {
                let mut v = Vec::new();
                entry.dtype.to_f32(file.bytes(entry), &mut v);
                v
            })),
            StateFile::Shards(s) => s.read(key),
        }
    }
}

/// Save `model` as an HF checkpoint in `out` (replacing any previous checkpoint there).
pub fn save(
    model: &Llama,
    config: &LlamaConfig,
    out: impl AsRef<Path>,
    opts: &SaveOptions,
) -> Result<(), CheckpointError> {
    save_with(model, config, out, opts, |_| Ok(()))
}

/// [`save`], with `extra(dir)` writing more files (optimizer, trainer state) into the new
/// checkpoint directory before it appears under its name.
pub fn save_with(
    model: &Llama,
    config: &LlamaConfig,
    out: impl AsRef<Path>,
    opts: &SaveOptions,
    extra: impl FnOnce(&Path) -> Result<(), CheckpointError>,
) -> Result<(), CheckpointError> {
    let out = out.as_ref();
    let weights = weights_writer(model, config, out, opts)?;
    llama_spec::hf::write_checkpoint_dir(out, config, opts, weights, extra)
}

/// What writes `model`'s HF weights into a directory (a checkpoint's staging directory), once
/// its parameters are checked against `config` (errors name `out`).
pub fn weights_writer<'a>(
    model: &Llama,
    config: &'a LlamaConfig,
    out: &'a Path,
    opts: &'a SaveOptions,
) -> Result<impl FnOnce(&Path) -> Result<(), CheckpointError> + 'a, CheckpointError> {
    let tensors = hf_tensors(config);
    let params: BTreeMap<String, ParamValue> = named_params(model).into_iter().collect();
    for (name, shape) in &tensors {
        let got = params.get(name).map(ParamValue::numel);
        if got != Some(shape.iter().product()) {
            return Err(CheckpointError::format(
                out,
                format!("model has no parameter {name} of shape {shape:?} for this config"),
            ));
        }
    }
    Ok(move |dir: &Path| {
        llama_spec::hf::write_weights(dir, config, opts, |name| {
            params[name]
                .to_f32()
                .map_err(|e| CheckpointError::format(out, format!("tensor {name}: {e}")))
        })
    })
}
