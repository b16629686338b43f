#![allow(dead_code)]
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use edge_runtime::{LoadOptions, Model};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file under assets/ (fetched by scripts/fetch-assets.sh, which CI runs first).
pub fn asset(rel: &str) -> PathBuf {
    let p = repo().join("assets").join(rel);
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-assets.sh",
        p.display()
    );
    p
}

pub fn smollm2_path() -> PathBuf {
    asset("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The shipped model, loaded once per test binary.
pub fn smollm2() -> Arc<Model> {
    static M: OnceLock<Arc<Model>> = OnceLock::new();
    M.get_or_init(|| Arc::new(Model::load(smollm2_path(), LoadOptions::default()).expect("load")))
        .clone()
}

pub fn fixture(name: &str) -> serde_json::Value {
    let p = repo().join("tests/fixtures").join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).expect("json")
}

/// The SHA-256 of the shipped model's bytes (computed once per test binary).
pub fn smollm2_sha256() -> &'static str {
    static SHA: OnceLock<String> = OnceLock::new();
    SHA.get_or_init(|| {
        let bytes = std::fs::read(smollm2_path()).expect("read the model");
        test_support::key(&[&bytes])
    })
}

/// Requantize the shipped model to `ty` the way `llama-quantize --allow-requantize` does for the
/// "mostly ty" file types: every 2-D weight is dequantized and re-quantized with ggml's
/// reference quantizer, except the tensors named in `keep` (llama-quantize's choice for them is
/// their current type, e.g. the tied embedding's Q6_K falls back to Q8_0 for 576 columns); 1-D
/// tensors are copied. Cached under target/test-models, keyed by this generator's source, the
/// llama-spec code it calls (quant formats, GGUF writer), the model's bytes and the arguments.
pub fn requantized(ty: llama_spec::GgmlType, file_type: u32, keep: &[&str]) -> PathBuf {
    use llama_spec::gguf::{GgufFile, GgufWriter, MetadataValue, TensorSpec};
    let spec = repo().join("llama-spec/src");
    let args = format!("{} {file_type} {keep:?}", ty.name());
    let key = test_support::key(&[
        include_bytes!("mod.rs"),
        &test_support::dir_source(&spec.join("quant")),
        &test_support::dir_source(&spec.join("gguf")),
        smollm2_sha256().as_bytes(),
        args.as_bytes(),
    ]);
    let name = format!(
        "SmolLM2-135M-Instruct.{}{}.gguf",
        ty.name(),
        keep.iter()
            .map(|k| format!("-keep-{k}"))
            .collect::<String>()
    );
    test_support::cached(&name, &key, |tmp| {
        let src = GgufFile::open(smollm2_path()).expect("open");
        let mut md = src.metadata().clone();
        md.set("general.file_type", MetadataValue::U32(file_type));
        let target = |t: &llama_spec::gguf::TensorInfo| {
            if t.dims.len() >= 2 && !keep.contains(&t.name.as_str()) {
                ty
            } else {
                t.ggml_type
            }
        };
        let specs: Vec<TensorSpec> = src
            .tensors()
            .iter()
            .map(|t| TensorSpec {
                ggml_type: target(t),
                ..TensorSpec::from(t)
            })
            .collect();
        let mut w = GgufWriter::create(tmp, &md, &specs).expect("create");
        for t in src.tensors() {
            let data = src.tensor_data(t);
            if target(t) == t.ggml_type {
                w.write_data(data).expect("copy");
            } else {
                let x = llama_spec::quant::dequantize_to_vec(
                    t.ggml_type,
                    data,
                    t.n_elements() as usize,
                )
                .expect("dequantize");
                w.write_data(&llama_spec::quant::quantize_to_vec(ty, &x).expect("quantize"))
                    .expect("write");
            }
        }
        w.finish().expect("finish");
    })
}

/// llama.cpp's own Qwen2 vocabulary file, fetched by scripts/fetch-assets.sh.
pub fn qwen2_vocab_path() -> PathBuf {
    asset("llama-cpp-vocab/ggml-vocab-qwen2.gguf")
}

/// `k / 1024 * scale + offset` for `k` in [-1024, 1024) from splitmix64(fnv1a(name) + i): the
/// counter-based weights of tests/fixtures/make_qwen2_fixture.py, every value exact in f32.
pub fn fixture_values(name: &str, n: usize, scale: f32, offset: f32) -> Vec<f32> {
    let seed = name.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    });
    (0..n as u64)
        .map(|i| {
            let mut z = seed.wrapping_add(i).wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let k = (z >> 53) as i64 - 1024;
            (k as f32 / 1024.0) * scale + offset
        })
        .collect()
}

/// The random Qwen2-shaped model of tests/fixtures/runtime/qwen2_tiny.json, rebuilt: the same
/// counter-based weights in the types llama.cpp's converter chose (the caller checks each
/// tensor's SHA-256 against the converter's), the architecture keys from the config, and the
/// tokenizer of llama.cpp's Qwen2 vocabulary file. Cached under target/test-models.
pub fn qwen2_tiny() -> PathBuf {
    use llama_spec::gguf::{GgufFile, GgufWriter, MetadataValue, TensorSpec};
    use llama_spec::names::{LayerTensor, TensorName};
    let fx_path = repo().join("tests/fixtures/runtime/qwen2_tiny.json");
    let fx_bytes = std::fs::read(&fx_path).expect("qwen2 fixture");
    let vocab_bytes = std::fs::read(qwen2_vocab_path()).expect("qwen2 vocabulary");
    let spec = repo().join("llama-spec/src");
    let key = test_support::key(&[
        include_bytes!("mod.rs"),
        &test_support::dir_source(&spec.join("quant")),
        &test_support::dir_source(&spec.join("gguf")),
        include_bytes!("../../../llama-spec/src/config.rs"),
        &fx_bytes,
        &vocab_bytes,
    ]);
    test_support::cached("qwen2-tiny.Q8_0.gguf", &key, |tmp| {
        let fx: serde_json::Value = serde_json::from_slice(&fx_bytes).expect("json");
        let cfg = llama_spec::LlamaConfig::from_json(&fx["config"].to_string()).expect("config");
        assert_eq!(cfg.architecture, llama_spec::config::Architecture::Qwen2);
        let vocab = GgufFile::open(qwen2_vocab_path()).expect("open the vocabulary");
        let mut md = cfg.to_gguf_metadata();
        md.set("general.name", MetadataValue::String("qwen2-tiny".into()));
        let ids = [
            llama_spec::config::keys::BOS_ID,
            llama_spec::config::keys::EOS_ID,
        ];
        for (k, v) in vocab.metadata().iter() {
            if k.starts_with("tokenizer.") && !ids.contains(&k) {
                md.set(k, v.clone());
            }
        }
        md.set("tokenizer.ggml.add_bos_token", MetadataValue::Bool(false));
        let tensors = &fx["tensors"];
        let names = TensorName::all(&cfg);
        let specs: Vec<TensorSpec> = names
            .iter()
            .map(|n| {
                let ty = tensors[n.gguf()]["type"]
                    .as_str()
                    .expect("type in the fixture");
                TensorSpec {
                    name: n.gguf(),
                    dims: n.gguf_dims(&cfg),
                    ggml_type: llama_spec::GgmlType::from_name(ty).expect("type"),
                }
            })
            .collect();
        let mut w = GgufWriter::create(tmp, &md, &specs).expect("create");
        for (n, s) in names.iter().zip(&specs) {
            let len = s.dims.iter().product::<u64>() as usize;
            let (scale, offset) = match n {
                TensorName::TokenEmbd => (1.0, 0.0),
                TensorName::OutputNorm
                | TensorName::Layer(_, LayerTensor::AttnNorm | LayerTensor::FfnNorm) => (0.25, 1.0),
                TensorName::Layer(
                    _,
                    LayerTensor::AttnQBias | LayerTensor::AttnKBias | LayerTensor::AttnVBias,
                ) => (0.5, 0.0),
                _ => (0.25, 0.0),
            };
            let x = fixture_values(&n.hf().expect("HF name"), len, scale, offset);
            let data = llama_spec::quant::quantize_to_vec(s.ggml_type, &x).expect("quantize");
            w.write_data(&data).expect("write");
        }
        w.finish().expect("finish");
    })
}
