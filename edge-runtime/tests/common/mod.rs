#![allow(dead_code)]
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use edge_runtime::{LoadOptions, Model};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn smollm2_path() -> PathBuf {
    let p = repo().join("assets/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-assets.sh",
        p.display()
    );
    p
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
