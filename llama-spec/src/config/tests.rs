use super::*;
use crate::gguf::{GgmlType, GgufWriter, TensorSpec};
use crate::names::{TensorName, TENSOR_MAP_GGUF_ROPE_FREQS};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/configs")
        .join(name)
}

pub(crate) fn smollm2_gguf() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/SmolLM2-135M-Instruct.Q4_1.gguf")
}

#[test]
fn reads_llama31_config() {
    let c = LlamaConfig::from_file(fixture("llama-3.1-8b-instruct.json")).expect("parse");
    assert_eq!(c.n_kv_heads(), 8);
    assert_eq!(c.head_dim(), 128);
    assert_eq!(c.gqa_groups(), 4);
    assert_eq!(
        c.eos_token_id.as_ref().map(TokenIds::ids),
        Some(vec![128001, 128008, 128009])
    );
    let rs = c.rope_scaling.as_ref().expect("rope scaling");
    assert_eq!(
        (rs.factor, rs.original_max_position_embeddings),
        (8.0, 8192)
    );
    assert!(c.extra.contains_key("torch_dtype"), "unknown keys are kept");
}

#[test]
fn llama3_rope_freqs_follow_the_converter_formula() {
    let c = LlamaConfig::from_file(fixture("llama-3.1-8b-instruct.json")).expect("parse");
    let f = c.rope_freqs().expect("llama3 scaling");
    assert_eq!(f.len(), 64);
    // High frequencies are untouched, low ones divided by `factor`, a smooth ramp in between.
    assert_eq!(f[0], 1.0);
    assert_eq!(f[63], 8.0);
    assert!(f.windows(2).all(|w| w[1] >= w[0]), "monotone: {f:?}");
    let ramp: Vec<f32> = f.iter().copied().filter(|&x| x > 1.0 && x < 8.0).collect();
    assert!(!ramp.is_empty() && ramp.len() < 20, "{ramp:?}");
    let smol = LlamaConfig::from_file(fixture("smollm2-135m-instruct.json")).expect("parse");
    assert!(smol.rope_freqs().is_none());
}

#[test]
fn validate_names_the_problem() {
    let base = LlamaConfig::from_file(fixture("smollm2-135m-instruct.json")).expect("parse");
    let mut c = base.clone();
    c.num_key_value_heads = Some(4);
    assert!(c.validate().unwrap_err().contains("num_key_value_heads"));
    let mut c = base.clone();
    c.hidden_size = 577;
    assert!(c.validate().unwrap_err().contains("hidden_size"));
    let mut c = base.clone();
    c.bos_token_id = Some(49152);
    assert!(c.validate().unwrap_err().contains("bos_token_id"));
    let mut c = base;
    c.rms_norm_eps = 0.0;
    assert!(c.validate().unwrap_err().contains("rms_norm_eps"));

    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("config.json");
    std::fs::write(&p, r#"{"hidden_size": 8}"#).expect("write");
    let err = LlamaConfig::from_file(&p).unwrap_err().to_string();
    assert!(
        err.contains("config.json") && err.contains("missing field"),
        "{err}"
    );
}

/// Write a tiny GGUF that carries only the config (and 1-element placeholder tensors).
fn gguf_with(c: &LlamaConfig, dir: &Path) -> GgufFile {
    let mut specs = vec![TensorSpec {
        name: TensorName::TokenEmbd.gguf(),
        dims: vec![1],
        ggml_type: GgmlType::F32,
    }];
    if !c.tie_word_embeddings {
        specs.push(TensorSpec {
            name: TensorName::Output.gguf(),
            dims: vec![1],
            ggml_type: GgmlType::F32,
        });
    }
    let freqs = c.rope_freqs();
    if let Some(f) = &freqs {
        specs.push(TensorSpec {
            name: TENSOR_MAP_GGUF_ROPE_FREQS.into(),
            dims: vec![f.len() as u64],
            ggml_type: GgmlType::F32,
        });
    }
    let path = dir.join("cfg.gguf");
    let mut w = GgufWriter::create(&path, &c.to_gguf_metadata(), &specs).expect("create");
    w.write_data(&1f32.to_le_bytes()).expect("write");
    if !c.tie_word_embeddings {
        w.write_data(&1f32.to_le_bytes()).expect("write");
    }
    if let Some(f) = freqs {
        let bytes: Vec<u8> = f.iter().flat_map(|x| x.to_le_bytes()).collect();
        w.write_data(&bytes).expect("write");
    }
    w.finish().expect("finish");
    GgufFile::open(&path).expect("open")
}

#[test]
fn gguf_round_trip_is_lossless() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["llama-3.1-8b-instruct.json", "smollm2-135m-instruct.json"] {
        let mut c = LlamaConfig::from_file(fixture(name)).expect("parse");
        let file = gguf_with(&c, dir.path());
        let md = file.metadata();
        // The types llama.cpp enforces.
        assert!(matches!(
            md.get(keys::BLOCK_COUNT),
            Some(MetadataValue::U32(_))
        ));
        assert!(matches!(md.get(keys::RMS_EPS), Some(MetadataValue::F32(_))));
        assert!(matches!(
            md.get(keys::ROPE_FREQ_BASE),
            Some(MetadataValue::F32(_))
        ));
        let back = LlamaConfig::from_gguf(&file).expect("from gguf");
        // GGUF keeps one EOS id and no HF-only extras; everything else must survive.
        c.extra.clear();
        c.eos_token_id = c
            .eos_token_id
            .as_ref()
            .and_then(TokenIds::first)
            .map(TokenIds::One);
        c.num_key_value_heads = Some(c.n_kv_heads());
        assert_eq!(back, c, "{name}");
    }
}

#[test]
fn reads_the_shipped_smollm2_gguf() {
    let file = GgufFile::open(smollm2_gguf()).expect("run scripts/fetch-assets.sh");
    let c = LlamaConfig::from_gguf(&file).expect("config");
    let expected = LlamaConfig::from_file(fixture("smollm2-135m-instruct.json")).expect("parse");
    assert_eq!(
        (c.hidden_size, c.intermediate_size, c.num_hidden_layers),
        (
            expected.hidden_size,
            expected.intermediate_size,
            expected.num_hidden_layers
        )
    );
    assert_eq!(
        (c.num_attention_heads, c.n_kv_heads(), c.head_dim()),
        (9, 3, 64)
    );
    assert_eq!((c.rope_theta, c.rms_norm_eps), (100_000.0, 1e-5));
    assert!(c.tie_word_embeddings);
    assert_eq!((c.vocab_size, c.bos_token_id), (49152, Some(1)));
}

/// A GGUF file with `md` and one 1-element tensor: enough to read the config from.
fn one_tensor_gguf(path: &Path, md: &Metadata) {
    let spec = TensorSpec {
        name: "token_embd.weight".into(),
        dims: vec![1],
        ggml_type: GgmlType::F32,
    };
    let mut w = GgufWriter::create(path, md, &[spec]).expect("create");
    w.write_data(&[0; 4]).expect("data");
    w.finish().expect("finish");
}

#[test]
fn wrong_key_type_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = LlamaConfig::from_file(fixture("smollm2-135m-instruct.json")).expect("parse");
    let mut md = c.to_gguf_metadata();
    md.set(keys::RMS_EPS, MetadataValue::F64(1e-5));
    let path = dir.path().join("bad.gguf");
    one_tensor_gguf(&path, &md);
    let err = LlamaConfig::from_gguf(&GgufFile::open(&path).expect("open"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad.gguf") && err.contains("FLOAT32"), "{err}");
}

#[test]
fn reads_transformers5_rope_parameters() {
    // transformers 5 writes the rope base and scaling only inside `rope_parameters`.
    let gqa = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/train/gqa_llama3/config.json");
    let c = LlamaConfig::from_file(gqa).expect("parse");
    assert_eq!(c.rope_theta, 500_000.0);
    let rs = c.rope_scaling.as_ref().expect("llama3 scaling");
    assert_eq!((rs.rope_type.as_str(), rs.factor), ("llama3", 8.0));
    assert_eq!(rs.original_max_position_embeddings, 32);
    let back = LlamaConfig::from_json(&c.to_json()).expect("re-parse");
    assert_eq!(back, c, "written back, it reads the same");

    let plain = r#"{"vocab_size": 8, "hidden_size": 8, "intermediate_size": 8,
        "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 8,
        "rope_parameters": {"rope_type": "default", "rope_theta": 123.0}}"#;
    let c = LlamaConfig::from_json(plain).expect("parse");
    assert_eq!((c.rope_theta, c.rope_scaling.is_none()), (123.0, true));
}

#[test]
fn qwen2_gguf_keys_round_trip_under_their_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut c = LlamaConfig::from_file(fixture("smollm2-135m-instruct.json")).expect("parse");
    c.architecture = Architecture::Qwen2;
    let file = gguf_with(&c, dir.path());
    let md = file.metadata();
    assert_eq!(
        md.get(keys::ARCHITECTURE).and_then(MetadataValue::as_str),
        Some("qwen2")
    );
    assert!(md.get(keys::BLOCK_COUNT).is_none());
    assert!(matches!(
        md.get("qwen2.block_count"),
        Some(MetadataValue::U32(30))
    ));
    let back = LlamaConfig::from_gguf(&file).expect("from gguf");
    assert_eq!(back.architecture, Architecture::Qwen2);
    assert_eq!(back.architecture.rope_style(), RopeStyle::Halves);
    assert!(back.architecture.qkv_bias());
    assert_eq!(
        (back.hidden_size, back.num_hidden_layers, back.n_kv_heads()),
        (c.hidden_size, c.num_hidden_layers, c.n_kv_heads())
    );
    // Written back as HF, it says what it is.
    let json: serde_json::Value = serde_json::from_str(&back.to_json()).expect("json");
    assert_eq!(json["model_type"], "qwen2");
    assert_eq!(json["architectures"][0], "Qwen2ForCausalLM");
}

#[test]
fn other_architectures_and_hf_qwen2_checkpoints_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = LlamaConfig::from_file(fixture("smollm2-135m-instruct.json")).expect("parse");
    let mut md = c.to_gguf_metadata();
    md.set(keys::ARCHITECTURE, MetadataValue::String("gemma3".into()));
    let path = dir.path().join("gemma.gguf");
    one_tensor_gguf(&path, &md);
    let err = LlamaConfig::from_gguf(&GgufFile::open(&path).expect("open"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("gemma.gguf") && err.contains("gemma3") && err.contains("llama, qwen2"),
        "{err}"
    );

    // Training and conversion would drop a Qwen2 checkpoint's biases: refused at the config.
    let mut json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("smollm2-135m-instruct.json")).expect("read"),
    )
    .expect("json");
    json["model_type"] = "qwen2".into();
    let p = dir.path().join("config.json");
    std::fs::write(&p, json.to_string()).expect("write");
    let err = LlamaConfig::from_file(&p).unwrap_err().to_string();
    assert!(
        err.contains("config.json") && err.contains("\"qwen2\" is not supported"),
        "{err}"
    );
}
