//! HF checkpoint directory -> GGUF, the way llama.cpp's `convert_hf_to_gguf.py` (metadata, Q/K
//! permutation, `rope_freqs`) followed by `llama-quantize` (tensor types, ggml's reference
//! quantizers) would make it. Tensors stream one at a time: read from the mmap'd shards,
//! quantized on all cores, appended to the output, dropped.

use std::path::{Path, PathBuf};

use llama_spec::gguf::{GgufWriter, Metadata, MetadataValue, TensorSpec};
use llama_spec::hf::HfCheckpoint;
use llama_spec::names::{permute_qk_f32, TensorName};
use llama_spec::tokenizer::keys;
use llama_spec::{GgmlType, LlamaConfig};
use rayon::prelude::*;

use crate::policy::{FileType, Override, Policy};
use crate::progress::Progress;
use crate::{stream, Error};

/// `quantize convert` options.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub ftype: FileType,
    pub overrides: Vec<Override>,
    /// `general.name`; defaults to the checkpoint directory's name.
    pub name: Option<String>,
    pub progress: bool,
}

/// What a conversion wrote.
#[derive(Debug, Clone)]
pub struct Summary {
    pub tensors: usize,
    pub bytes: u64,
    pub seconds: f64,
}

/// Quantize `values` (whole rows of `ne0`) to `ty` on all cores, rows split into tasks; the
/// output in parts, in order.
pub fn quantize_rows(ty: GgmlType, values: &[f32], ne0: usize) -> Result<Vec<Vec<u8>>, Error> {
    let rows_per_chunk = (65_536 / ne0.max(1)).max(1);
    values
        .par_chunks(rows_per_chunk * ne0.max(1))
        .map(|chunk| llama_spec::quant::quantize_to_vec(ty, chunk))
        .collect::<Result<_, _>>()
        .map_err(|e| Error::msg(format!("quantizing to {ty}: {e}")))
}

/// The `general.*`, `llama.*` and `tokenizer.*` metadata for an HF checkpoint directory.
pub fn metadata(
    dir: &Path,
    config: &LlamaConfig,
    ftype: FileType,
    name: &str,
) -> Result<Metadata, Error> {
    let mut md = Metadata::new();
    md.set(
        "general.architecture",
        MetadataValue::String("llama".into()),
    );
    md.set("general.type", MetadataValue::String("model".into()));
    md.set("general.name", MetadataValue::String(name.to_string()));
    for (k, v) in config.to_gguf_metadata().iter() {
        md.set(k, v.clone());
    }
    md.set("general.file_type", MetadataValue::U32(ftype.llama_ftype()));
    md.set("general.quantization_version", MetadataValue::U32(2));

    let tok_path = dir.join("tokenizer.json");
    if !tok_path.exists() {
        return Err(Error::msg(format!(
            "{}: missing (llama.cpp needs the tokenizer in the GGUF)",
            tok_path.display()
        )));
    }
    let tok_md =
        llama_spec::tokenizer::hf_to_gguf_metadata(&tok_path, Some(config.vocab_size as usize))
            .map_err(|e| Error::msg(e.to_string()))?;
    for (k, v) in tok_md.iter() {
        md.set(k, v.clone());
    }
    let tokens: Vec<String> = match md.get(keys::TOKENS).and_then(|v| v.as_array()) {
        Some(llama_spec::gguf::ArrayValue::String(a)) => a.clone(),
        _ => Vec::new(),
    };
    let id_of = |t: &str| tokens.iter().position(|x| x == t).map(|i| i as u32);

    // Special tokens and the chat template: tokenizer_config.json, as gguf-py's SpecialVocab.
    let cfg_path = dir.join("tokenizer_config.json");
    let tc: serde_json::Value = if cfg_path.exists() {
        let text = std::fs::read_to_string(&cfg_path)
            .map_err(|e| Error::msg(format!("{}: {e}", cfg_path.display())))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::msg(format!("{}: not JSON: {e}", cfg_path.display())))?
    } else {
        serde_json::Value::Null
    };
    let token_text = |v: &serde_json::Value| -> Option<String> {
        v.as_str().map(str::to_string).or_else(|| {
            v.get("content")
                .and_then(|c| c.as_str())
                .map(str::to_string)
        })
    };
    let special = |key: &str| token_text(&tc[key]).and_then(|t| id_of(&t));
    let bos = special("bos_token").or(config.bos_token_id);
    let eos = special("eos_token").or_else(|| config.eos_token_id.as_ref().and_then(|e| e.first()));
    for (key, id) in [
        (keys::BOS_ID, bos),
        (keys::EOS_ID, eos),
        (keys::PAD_ID, special("pad_token")),
        (keys::UNK_ID, special("unk_token")),
    ] {
        if let Some(id) = id {
            md.set(key, MetadataValue::U32(id));
        }
    }
    // As gguf-py: `add_bos_token` from tokenizer_config.json, else from a post-processor template
    // that inserts BOS (Meta's Llama-3 tokenizer.json); otherwise llama.cpp's own default.
    let add_bos = tc["add_bos_token"]
        .as_bool()
        .or_else(|| tokenizer_post_processor_adds_bos(&tok_path).then_some(true));
    if let Some(add_bos) = add_bos {
        md.set(keys::ADD_BOS, MetadataValue::Bool(add_bos));
    }
    md.set(
        keys::ADD_EOS,
        MetadataValue::Bool(tc["add_eos_token"].as_bool().unwrap_or(false)),
    );
    let template = match &tc["chat_template"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(list) => list
            .iter()
            .find(|t| t["name"].as_str() == Some("default"))
            .and_then(|t| t["template"].as_str())
            .map(str::to_string),
        _ => None,
    };
    if let Some(t) = template {
        md.set(keys::CHAT_TEMPLATE, MetadataValue::String(t));
    }
    Ok(md)
}

fn tokenizer_post_processor_adds_bos(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .map(|j| {
            let pp = j["post_processor"].to_string();
            pp.contains("TemplateProcessing") && pp.contains("<|begin_of_text|>")
        })
        .unwrap_or(false)
}

/// Convert the HF checkpoint in `dir` to the GGUF file `out` (written atomically).
pub fn convert(dir: &Path, out: &Path, opts: &ConvertOptions) -> Result<Summary, Error> {
    let start = std::time::Instant::now();
    let ckpt = HfCheckpoint::open(dir)?;
    ckpt.check_names()?;
    let c = &ckpt.config;
    let name = opts.name.clone().unwrap_or_else(|| {
        dir.canonicalize()
            .unwrap_or_else(|_| PathBuf::from(dir))
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    });
    let md = metadata(dir, c, opts.ftype, &name)?;
    let policy = Policy {
        ftype: opts.ftype,
        n_layers: c.num_hidden_layers,
        tied_embeddings: c.tie_word_embeddings,
        overrides: opts.overrides.clone(),
    };
    let names = TensorName::all(c);
    let specs: Vec<TensorSpec> = names
        .iter()
        .map(|t| {
            let dims = t.gguf_dims(c);
            let ggml_type = policy.tensor_type(&t.gguf(), dims[0], dims.len());
            TensorSpec {
                name: t.gguf(),
                dims,
                ggml_type,
            }
        })
        .collect();
    let w = GgufWriter::create(out, &md, &specs)?;
    let total: u64 = specs
        .iter()
        .map(|s| s.dims.iter().product::<u64>() * 4)
        .sum();
    let mut bar = Progress::new("convert", total, opts.progress);
    let mut bytes = 0u64;
    stream::write_streamed(w, |emit| {
        for (t, spec) in names.iter().zip(&specs) {
            let ne0 = spec.dims[0] as usize;
            let ty = spec.ggml_type;
            let quantize_err =
                |e: String| Error::msg(format!("{}: {}: {e}", dir.display(), spec.name));
            let hf = t.hf().unwrap_or_default();
            let shape: Vec<usize> = t.hf_shape(c).iter().map(|&d| d as usize).collect();
            let whole = match t {
                TensorName::RopeFreqs => Some(c.rope_freqs().unwrap_or_default()),
                // Q and K rows are permuted within each head: read those (small) tensors whole.
                _ => match t.rope_permute_heads(c) {
                    Some(heads) => {
                        let (v, _) = ckpt.tensor_f32(&hf, &shape)?;
                        Some(permute_qk_f32(&v, shape[1], heads as usize, false))
                    }
                    None => None,
                },
            };
            if let Some(values) = whole {
                let n = values.len() as u64;
                for p in quantize_rows(ty, &values, ne0).map_err(|e| quantize_err(e.to_string()))? {
                    bytes += p.len() as u64;
                    if !emit(p) {
                        return Ok(()); // the writer failed; write_streamed returns its error
                    }
                }
                bar.advance(&spec.name, ty, n * 4);
                continue;
            }
            // Everything else streams from the mapped shard, a step of rows at a time.
            let (data, dtype) = ckpt.tensor_bytes(&hf, &shape)?;
            let row_bytes = ne0 * dtype.size();
            let n_rows = data.len() / row_bytes.max(1);
            for rows in stream::row_steps(n_rows, ne0) {
                let range = rows.start * row_bytes..rows.end * row_bytes;
                let parts = stream::map_rows(&data[range.clone()], row_bytes, ne0, |chunk, _| {
                    let mut x = Vec::new();
                    dtype.to_f32(chunk, &mut x);
                    llama_spec::quant::quantize_to_vec(ty, &x)
                        .map_err(|e| format!("quantizing to {ty}: {e}"))
                })
                .map_err(quantize_err)?;
                for p in parts {
                    bytes += p.len() as u64;
                    if !emit(p) {
                        return Ok(());
                    }
                }
                ckpt.release_part(&hf, range);
                bar.advance(&spec.name, ty, (rows.len() * ne0) as u64 * 4);
            }
        }
        Ok(())
    })?;
    bar.finish();
    Ok(Summary {
        tensors: specs.len(),
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    })
}
