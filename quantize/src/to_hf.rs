//! GGUF -> HF checkpoint directory, so that the trainer can fine-tune a GGUF-only model:
//! weights dequantized to F32 or BF16 safetensors, Q/K rows un-permuted back to HF's RoPE
//! layout, `config.json` from the `llama.*` metadata, and `tokenizer.json` /
//! `tokenizer_config.json` rebuilt from the `tokenizer.*` metadata.

use std::path::Path;

use llama_spec::gguf::GgufFile;
use llama_spec::hf::safetensors::Dtype;
use llama_spec::hf::{write_checkpoint, HfError, WriteOptions};
use llama_spec::names::{permute_qk_f32, TensorName};
use llama_spec::tokenizer::{keys, GgufVocab};
use llama_spec::LlamaConfig;

use crate::progress::Progress;
use crate::Error;

/// Write the HF checkpoint for the GGUF file `gguf` into `out` (atomically, as a whole).
pub fn to_hf(gguf: &Path, out: &Path, dtype: Dtype, progress: bool) -> Result<LlamaConfig, Error> {
    let file = GgufFile::open(gguf)?;
    let mut config = LlamaConfig::from_gguf(&file).map_err(|e| Error::msg(e.to_string()))?;
    let vocab = GgufVocab::from_gguf(&file).map_err(|e| Error::msg(e.to_string()))?;
    let tokenizer = vocab.build(gguf).map_err(|e| Error::msg(e.to_string()))?;
    let tokenizer_json = tokenizer.to_string(true).map_err(|e| {
        Error::msg(format!(
            "{}: rebuilding tokenizer.json: {e}",
            gguf.display()
        ))
    })?;
    let special = &vocab.special;
    let text = |id: Option<u32>| id.and_then(|i| vocab.tokens.get(i as usize)).cloned();
    config.bos_token_id = special.bos;
    config.eos_token_id = special.eos.map(llama_spec::config::TokenIds::One);
    let mut tc = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": special.add_bos,
        "add_eos_token": false,
        "clean_up_tokenization_spaces": false,
        "model_max_length": config.max_position_embeddings,
    });
    for (key, id) in [
        ("bos_token", special.bos),
        ("eos_token", special.eos),
        ("pad_token", special.pad),
    ] {
        if let Some(t) = text(id) {
            tc[key] = t.into();
        }
    }
    let unk = file
        .metadata()
        .get(keys::UNK_ID)
        .and_then(|v| v.as_u64())
        .and_then(|i| u32::try_from(i).ok());
    if let Some(t) = text(unk) {
        tc["unk_token"] = t.into();
    }
    if let Some(t) = file
        .metadata()
        .get(keys::CHAT_TEMPLATE)
        .and_then(|v| v.as_str())
    {
        tc["chat_template"] = t.into();
    }
    let opts = WriteOptions {
        dtype,
        max_shard_bytes: 5 << 30,
        tokenizer_from: None,
        extra_files: vec![
            ("tokenizer.json".into(), tokenizer_json.into_bytes()),
            (
                "tokenizer_config.json".into(),
                format!("{tc:#}\n").into_bytes(),
            ),
        ],
    };
    let total: u64 = file.tensors().iter().map(|t| t.n_elements() * 4).sum();
    let mut bar = Progress::new("to-hf", total, progress);
    let c = config.clone();
    write_checkpoint(out, &config, &opts, |hf_name| {
        let t = TensorName::from_hf(hf_name)
            .ok_or_else(|| HfError::format(gguf, format!("no GGUF name for {hf_name}")))?;
        let info = file
            .tensor(&t.gguf())
            .ok_or_else(|| HfError::format(gguf, format!("tensor {} is missing", t.gguf())))?;
        let mut values = llama_spec::quant::dequantize_to_vec(
            info.ggml_type,
            file.tensor_data(info),
            info.n_elements() as usize,
        )
        .map_err(|e| HfError::format(gguf, format!("tensor {}: {e}", info.name)))?;
        if let Some(heads) = t.rope_permute_heads(&c) {
            values = permute_qk_f32(&values, info.dims[0] as usize, heads as usize, true);
        }
        bar.advance(&info.name, info.ggml_type, values.len() as u64 * 4);
        Ok(values)
    })?;
    bar.finish();
    Ok(config)
}
