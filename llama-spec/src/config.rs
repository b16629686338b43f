//! [`LlamaConfig`]: the model hyper-parameters, read from HF `config.json`, validated, and
//! converted to and from GGUF `llama.*` metadata exactly as llama.cpp reads them. GGUF files of
//! the Qwen2 [`Architecture`] (a Llama with Q/K/V biases and half-split RoPE, keys `qwen2.*`)
//! read into the same config.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::gguf::{GgufFile, Metadata, MetadataValue};

/// GGUF metadata keys (llama.cpp's `LLM_KV_*` names for the `llama` architecture).
pub mod keys {
    pub const ARCHITECTURE: &str = "general.architecture";
    pub const CONTEXT_LENGTH: &str = "llama.context_length";
    pub const EMBEDDING_LENGTH: &str = "llama.embedding_length";
    pub const BLOCK_COUNT: &str = "llama.block_count";
    pub const FEED_FORWARD_LENGTH: &str = "llama.feed_forward_length";
    pub const HEAD_COUNT: &str = "llama.attention.head_count";
    pub const HEAD_COUNT_KV: &str = "llama.attention.head_count_kv";
    pub const ROPE_FREQ_BASE: &str = "llama.rope.freq_base";
    pub const RMS_EPS: &str = "llama.attention.layer_norm_rms_epsilon";
    pub const ROPE_DIMENSION_COUNT: &str = "llama.rope.dimension_count";
    pub const KEY_LENGTH: &str = "llama.attention.key_length";
    pub const VALUE_LENGTH: &str = "llama.attention.value_length";
    pub const VOCAB_SIZE: &str = "llama.vocab_size";
    pub const BOS_ID: &str = "tokenizer.ggml.bos_token_id";
    pub const EOS_ID: &str = "tokenizer.ggml.eos_token_id";
    /// llama.cpp applies Llama-3 rope scaling through the `rope_freqs.weight` tensor alone;
    /// these extra keys (ignored by llama.cpp) keep the HF parameters so the round trip is lossless.
    pub const LLAMA3_ROPE_FACTOR: &str = "llama_spec.rope_scaling.factor";
    pub const LLAMA3_ROPE_LOW: &str = "llama_spec.rope_scaling.low_freq_factor";
    pub const LLAMA3_ROPE_HIGH: &str = "llama_spec.rope_scaling.high_freq_factor";
    pub const LLAMA3_ROPE_ORIG_CTX: &str =
        "llama_spec.rope_scaling.original_max_position_embeddings";
}

/// The Llama-family architectures (`general.architecture`) a config can describe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Architecture {
    /// Llama 1-3, SmolLM2, Mistral-7B-style files: Q/K rows permuted for pair-wise RoPE.
    #[default]
    Llama,
    /// Qwen2 / Qwen2.5: Q/K/V projections with biases, RoPE over the two halves of each head
    /// (llama.cpp's NEOX type), Q/K rows as in HF.
    Qwen2,
}

/// How RoPE pairs the dimensions of a head (llama.cpp's `LLAMA_ROPE_TYPE_NORM` / `_NEOX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Dimensions `2i` and `2i + 1` rotate together (GGUF Llama files, after the converter's
    /// Q/K permutation).
    AdjacentPairs,
    /// Dimensions `i` and `i + head_dim/2` rotate together (HF's rotate-half).
    Halves,
}

impl Architecture {
    pub const ALL: [Architecture; 2] = [Architecture::Llama, Architecture::Qwen2];

    /// The `general.architecture` value, also the prefix of its hyper-parameter keys.
    pub fn gguf_name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
        }
    }

    pub fn from_gguf_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.gguf_name() == name)
    }

    /// The class HF `config.json` names in `architectures`.
    fn hf_architectures(self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Qwen2 => "Qwen2ForCausalLM",
        }
    }

    pub fn rope_style(self) -> RopeStyle {
        match self {
            Architecture::Llama => RopeStyle::AdjacentPairs,
            Architecture::Qwen2 => RopeStyle::Halves,
        }
    }

    /// Whether the Q/K/V projections carry bias vectors.
    pub fn qkv_bias(self) -> bool {
        self == Architecture::Qwen2
    }

    /// A [`keys`] constant (written for `llama.`) under this architecture's prefix.
    pub fn key(self, llama_key: &str) -> String {
        match llama_key.strip_prefix("llama.") {
            Some(rest) => format!("{}.{rest}", self.gguf_name()),
            None => llama_key.to_string(),
        }
    }
}

/// What is wrong with a config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid Llama config.json: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// HF `rope_scaling` for `rope_type: "llama3"` (Llama-3.1 and later).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    #[serde(alias = "type")]
    pub rope_type: String,
    pub factor: f32,
    #[serde(default = "default_low_freq")]
    pub low_freq_factor: f32,
    #[serde(default = "default_high_freq")]
    pub high_freq_factor: f32,
    #[serde(default = "default_orig_ctx")]
    pub original_max_position_embeddings: u32,
}

fn default_low_freq() -> f32 {
    1.0
}
fn default_high_freq() -> f32 {
    4.0
}
fn default_orig_ctx() -> u32 {
    8192
}
fn default_rope_theta() -> f32 {
    10_000.0
}
fn default_rms_eps() -> f32 {
    1e-6
}
fn default_act() -> String {
    "silu".into()
}

/// `eos_token_id` is an int or a list of ints in HF configs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    pub fn ids(&self) -> Vec<u32> {
        match self {
            TokenIds::One(i) => vec![*i],
            TokenIds::Many(v) => v.clone(),
        }
    }
    pub fn first(&self) -> Option<u32> {
        self.ids().first().copied()
    }
}

/// Llama hyper-parameters, field names as in HF `config.json`. Unknown keys are kept in
/// `extra` so that a config read and written back loses nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub vocab_size: u32,
    pub hidden_size: u32,
    pub intermediate_size: u32,
    pub num_hidden_layers: u32,
    pub num_attention_heads: u32,
    /// Defaults to `num_attention_heads` (no GQA) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<u32>,
    /// Defaults to `hidden_size / num_attention_heads` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<u32>,
    pub max_position_embeddings: u32,
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f32,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<RopeScaling>,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<TokenIds>,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    /// From `model_type` in `config.json`, `general.architecture` in GGUF.
    #[serde(skip)]
    pub architecture: Architecture,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl LlamaConfig {
    /// Read and validate an HF `config.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let cfg = Self::from_json(&text).map_err(|source| ConfigError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        cfg.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        })?;
        if cfg.architecture != Architecture::Llama {
            // Training and conversion build Llama layers only; a Qwen2 checkpoint would lose its
            // biases and RoPE layout silently.
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                message: format!(
                    "model_type {:?} is not supported for HF checkpoints (only \"llama\"); \
                     edge-runtime runs {0:?} GGUF files",
                    cfg.architecture.gguf_name()
                ),
            });
        }
        Ok(cfg)
    }

    /// Parse HF `config.json` text (not validated). transformers >= 5 writes `rope_theta` and
    /// the scaling inside `rope_parameters`; that block wins over the legacy keys when present
    /// and is kept (in `extra`) so that the config is written back as it came.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let mut cfg: Self = serde_json::from_str(text)?;
        if cfg.extra.get("model_type").and_then(|t| t.as_str()) == Some("qwen2") {
            cfg.architecture = Architecture::Qwen2;
        }
        if let Some(params) = cfg.extra.get("rope_parameters").cloned() {
            if let Some(theta) = params.get("rope_theta").and_then(|t| t.as_f64()) {
                cfg.rope_theta = theta as f32;
            }
            let kind = params.get("rope_type").or_else(|| params.get("type"));
            cfg.rope_scaling = match kind.and_then(|k| k.as_str()) {
                None | Some("default") => None,
                Some(_) => Some(serde_json::from_value(params)?),
            };
        }
        Ok(cfg)
    }

    /// Serialize as HF `config.json` (with `model_type`/`architectures` if they were absent).
    pub fn to_json(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            let arch = self.architecture;
            m.entry("model_type").or_insert(arch.gguf_name().into());
            m.entry("architectures")
                .or_insert(serde_json::json!([arch.hf_architectures()]));
        }
        serde_json::to_string_pretty(&v).unwrap_or_default()
    }

    pub fn n_kv_heads(&self) -> u32 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> u32 {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Query heads per key/value head.
    pub fn gqa_groups(&self) -> u32 {
        self.num_attention_heads / self.n_kv_heads().max(1)
    }

    /// Every check a loader relies on; the message says which field is wrong and why.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.n_kv_heads()),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.head_dim() == 0 || !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "head_dim {} must be even and positive (RoPE rotates pairs)",
                self.head_dim()
            ));
        }
        if !self.num_attention_heads.is_multiple_of(self.n_kv_heads()) {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {} (GQA)",
                self.num_attention_heads,
                self.n_kv_heads()
            ));
        }
        if !(self.rms_norm_eps > 0.0 && self.rms_norm_eps.is_finite()) {
            return Err(format!(
                "rms_norm_eps {} must be positive",
                self.rms_norm_eps
            ));
        }
        if !(self.rope_theta > 0.0 && self.rope_theta.is_finite()) {
            return Err(format!("rope_theta {} must be positive", self.rope_theta));
        }
        if self.hidden_act != "silu" {
            return Err(format!(
                "hidden_act {:?} is not supported (Llama uses \"silu\")",
                self.hidden_act
            ));
        }
        if self.attention_bias || self.mlp_bias {
            return Err("attention_bias / mlp_bias are not supported for Llama".into());
        }
        if let Some(rs) = &self.rope_scaling {
            if rs.rope_type != "llama3" {
                return Err(format!(
                    "rope_scaling type {:?} is not supported (only \"llama3\")",
                    rs.rope_type
                ));
            }
            if rs.factor.is_nan() || rs.factor < 1.0 {
                return Err(format!("rope_scaling.factor {} must be >= 1", rs.factor));
            }
            if !(rs.low_freq_factor > 0.0 && rs.high_freq_factor > rs.low_freq_factor) {
                return Err(format!(
                    "rope_scaling needs 0 < low_freq_factor ({}) < high_freq_factor ({})",
                    rs.low_freq_factor, rs.high_freq_factor
                ));
            }
            if rs.original_max_position_embeddings == 0 {
                return Err(
                    "rope_scaling.original_max_position_embeddings must be positive".into(),
                );
            }
        }
        for (name, id) in [
            ("bos_token_id", self.bos_token_id),
            (
                "eos_token_id",
                self.eos_token_id.as_ref().and_then(TokenIds::first),
            ),
        ] {
            if let Some(id) = id {
                if id >= self.vocab_size {
                    return Err(format!(
                        "{name} {id} is outside the vocabulary ({})",
                        self.vocab_size
                    ));
                }
            }
        }
        Ok(())
    }

    /// Llama-3 rope frequency factors (`rope_freqs.weight`, `head_dim/2` F32 values), computed
    /// as llama.cpp's `convert_hf_to_gguf.py` does; `None` without llama3 rope scaling.
    pub fn rope_freqs(&self) -> Option<Vec<f32>> {
        let rs = self.rope_scaling.as_ref()?;
        let dim = self.head_dim() as usize;
        let base = self.rope_theta;
        let old_ctx = f64::from(rs.original_max_position_embeddings);
        let (low, high) = (
            f64::from(rs.low_freq_factor),
            f64::from(rs.high_freq_factor),
        );
        let (low_wavelen, high_wavelen) = (old_ctx / low, old_ctx / high);
        let factor = f64::from(rs.factor);
        Some(
            (0..dim)
                .step_by(2)
                .map(|i| {
                    // torch computes the frequencies in float32, the factors in float64.
                    let freq = 1.0f32 / base.powf(i as f32 / dim as f32);
                    let wavelen = 2.0 * std::f64::consts::PI / f64::from(freq);
                    let f = if wavelen < high_wavelen {
                        1.0
                    } else if wavelen > low_wavelen {
                        factor
                    } else {
                        let smooth = (old_ctx / wavelen - low) / (high - low);
                        1.0 / ((1.0 - smooth) / factor + smooth)
                    };
                    f as f32
                })
                .collect(),
        )
    }

    /// The `general.architecture` and `llama.*` keys (and BOS/EOS ids) for this config,
    /// with the value types llama.cpp requires (UINT32 counts, FLOAT32 eps and base).
    pub fn to_gguf_metadata(&self) -> Metadata {
        use MetadataValue::{String as S, F32, U32};
        let mut m = Metadata::new();
        let a = self.architecture;
        m.set(keys::ARCHITECTURE, S(a.gguf_name().into()));
        m.set(a.key(keys::VOCAB_SIZE), U32(self.vocab_size));
        m.set(
            a.key(keys::CONTEXT_LENGTH),
            U32(self.max_position_embeddings),
        );
        m.set(a.key(keys::EMBEDDING_LENGTH), U32(self.hidden_size));
        m.set(a.key(keys::BLOCK_COUNT), U32(self.num_hidden_layers));
        m.set(
            a.key(keys::FEED_FORWARD_LENGTH),
            U32(self.intermediate_size),
        );
        m.set(a.key(keys::HEAD_COUNT), U32(self.num_attention_heads));
        m.set(a.key(keys::HEAD_COUNT_KV), U32(self.n_kv_heads()));
        m.set(a.key(keys::ROPE_FREQ_BASE), F32(self.rope_theta));
        m.set(a.key(keys::RMS_EPS), F32(self.rms_norm_eps));
        m.set(a.key(keys::ROPE_DIMENSION_COUNT), U32(self.head_dim()));
        if self
            .head_dim
            .is_some_and(|d| d != self.hidden_size / self.num_attention_heads)
        {
            m.set(a.key(keys::KEY_LENGTH), U32(self.head_dim()));
            m.set(a.key(keys::VALUE_LENGTH), U32(self.head_dim()));
        }
        if let Some(rs) = &self.rope_scaling {
            m.set(keys::LLAMA3_ROPE_FACTOR, F32(rs.factor));
            m.set(keys::LLAMA3_ROPE_LOW, F32(rs.low_freq_factor));
            m.set(keys::LLAMA3_ROPE_HIGH, F32(rs.high_freq_factor));
            m.set(
                keys::LLAMA3_ROPE_ORIG_CTX,
                U32(rs.original_max_position_embeddings),
            );
        }
        if let Some(b) = self.bos_token_id {
            m.set(keys::BOS_ID, U32(b));
        }
        if let Some(e) = self.eos_token_id.as_ref().and_then(TokenIds::first) {
            m.set(keys::EOS_ID, U32(e));
        }
        m
    }

    /// Rebuild the config from a GGUF file's metadata and tensor list (the output head is tied
    /// when there is no `output.weight`). Type checks follow llama.cpp: a key of the wrong type
    /// is an error, not a silent conversion.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: file.path().to_path_buf(),
            message,
        };
        let md = file.metadata();
        let name = md.get(keys::ARCHITECTURE).and_then(MetadataValue::as_str);
        let arch = name.and_then(Architecture::from_gguf_name).ok_or_else(|| {
            let known: Vec<_> = Architecture::ALL.iter().map(|a| a.gguf_name()).collect();
            invalid(format!(
                "general.architecture is {name:?}; supported: {}",
                known.join(", ")
            ))
        })?;
        let cfg =
            Self::from_gguf_metadata(md, arch, file.tensor("output.weight").is_none(), || {
                file.get("tokenizer.ggml.tokens")
                    .and_then(MetadataValue::as_array)
                    .map(|a| a.len() as u32)
            })
            .map_err(invalid)?;
        cfg.validate().map_err(invalid)?;
        if let (Some(expected), Some(t)) = (cfg.rope_freqs(), file.tensor("rope_freqs.weight")) {
            if t.dims != [expected.len() as u64] {
                return Err(invalid(format!(
                    "rope_freqs.weight has dims {:?}, expected [{}]",
                    t.dims,
                    expected.len()
                )));
            }
        }
        Ok(cfg)
    }

    fn from_gguf_metadata(
        md: &Metadata,
        arch: Architecture,
        tied: bool,
        vocab_from_tokens: impl Fn() -> Option<u32>,
    ) -> Result<Self, String> {
        let u32_key = |k: &str| -> Result<Option<u32>, String> {
            let k = &arch.key(k);
            match md.get(k) {
                None => Ok(None),
                Some(MetadataValue::U32(v)) => Ok(Some(*v)),
                // llama.cpp also accepts other integer widths for some keys (e.g. token ids).
                Some(v) => v
                    .as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .map(Some)
                    .ok_or_else(|| format!("{k} has type {}, expected UINT32", v.value_type())),
            }
        };
        let f32_key = |k: &str| -> Result<Option<f32>, String> {
            let k = &arch.key(k);
            match md.get(k) {
                None => Ok(None),
                Some(MetadataValue::F32(v)) => Ok(Some(*v)),
                Some(v) => Err(format!("{k} has type {}, expected FLOAT32", v.value_type())),
            }
        };
        let req = |k: &str| -> Result<u32, String> {
            u32_key(k)?.ok_or_else(|| format!("missing metadata key {:?}", arch.key(k)))
        };
        let hidden = req(keys::EMBEDDING_LENGTH)?;
        let heads = req(keys::HEAD_COUNT)?;
        let rope_dim = u32_key(keys::ROPE_DIMENSION_COUNT)?;
        let key_len = u32_key(keys::KEY_LENGTH)?;
        let default_hd = hidden.checked_div(heads).unwrap_or(0);
        let head_dim = key_len.or(rope_dim).filter(|&d| d != default_hd);
        let vocab = match u32_key(keys::VOCAB_SIZE)? {
            Some(v) => v,
            None => vocab_from_tokens().ok_or_else(|| {
                format!(
                    "neither {} nor tokenizer.ggml.tokens is present",
                    arch.key(keys::VOCAB_SIZE)
                )
            })?,
        };
        let rope_scaling = match f32_key(keys::LLAMA3_ROPE_FACTOR)? {
            Some(factor) => Some(RopeScaling {
                rope_type: "llama3".into(),
                factor,
                low_freq_factor: f32_key(keys::LLAMA3_ROPE_LOW)?.unwrap_or(1.0),
                high_freq_factor: f32_key(keys::LLAMA3_ROPE_HIGH)?.unwrap_or(4.0),
                original_max_position_embeddings: u32_key(keys::LLAMA3_ROPE_ORIG_CTX)?
                    .unwrap_or(8192),
            }),
            None => None,
        };
        Ok(Self {
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: req(keys::FEED_FORWARD_LENGTH)?,
            num_hidden_layers: req(keys::BLOCK_COUNT)?,
            num_attention_heads: heads,
            num_key_value_heads: Some(u32_key(keys::HEAD_COUNT_KV)?.unwrap_or(heads)),
            head_dim,
            max_position_embeddings: req(keys::CONTEXT_LENGTH)?,
            rms_norm_eps: f32_key(keys::RMS_EPS)?
                .ok_or_else(|| format!("missing metadata key {:?}", arch.key(keys::RMS_EPS)))?,
            rope_theta: f32_key(keys::ROPE_FREQ_BASE)?.unwrap_or(10_000.0),
            rope_scaling,
            tie_word_embeddings: tied,
            bos_token_id: u32_key(keys::BOS_ID)?,
            eos_token_id: u32_key(keys::EOS_ID)?.map(TokenIds::One),
            hidden_act: default_act(),
            attention_bias: false,
            mlp_bias: false,
            architecture: arch,
            extra: match arch {
                Architecture::Llama => serde_json::Map::new(),
                Architecture::Qwen2 => {
                    let mut m = serde_json::Map::new();
                    m.insert("model_type".into(), arch.gguf_name().into());
                    m
                }
            },
        })
    }
}

#[cfg(test)]
mod tests;
