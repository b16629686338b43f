//! `quantize convert / requantize / to-hf` against llama.cpp (fixtures from
//! tests/fixtures/make_convert_fixtures.py) and round trips.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use edge_runtime::{LoadOptions, Model, Session, SessionOptions};
use llama_spec::gguf::GgufFile;
use llama_spec::hf::safetensors::{Dtype, SafetensorsFile};
use quantize::convert::{convert, ConvertOptions};
use quantize::policy::FileType;
use sha2::{Digest, Sha256};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn smollm2_gguf() -> PathBuf {
    let p = repo().join("assets/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} missing: run scripts/fetch-assets.sh",
        p.display()
    );
    p
}

/// The shipped SmolLM2 as an F32 HF checkpoint (made once, cached under target/test-models,
/// keyed by the source of `to-hf` and the llama-spec code it calls, and the model's bytes).
fn smollm2_hf() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let model = std::fs::read(smollm2_gguf()).expect("read the model");
        let key = test_support::key(&[
            &test_support::dir_source(&repo().join("quantize/src")),
            &test_support::dir_source(&repo().join("llama-spec/src")),
            &model,
        ]);
        test_support::cached("smollm2-hf", &key, |tmp| {
            quantize::to_hf::to_hf(&smollm2_gguf(), tmp, Dtype::F32, false).expect("to-hf");
        })
    })
}

fn opts(ftype: FileType) -> ConvertOptions {
    ConvertOptions {
        ftype,
        overrides: Vec::new(),
        name: Some("SmolLM2-135M-Instruct".into()),
        progress: false,
    }
}

/// The SmolLM2 HF checkpoint converted to `ty` (a `--type` name) in `dir`.
fn convert_smollm2(dir: &Path, ty: &str) -> PathBuf {
    let out = dir.join(format!("{ty}.gguf"));
    convert(
        smollm2_hf(),
        &out,
        &opts(FileType::parse(ty).expect("type")),
    )
    .expect("convert");
    out
}

fn fixture(name: &str) -> serde_json::Value {
    let p = repo().join("tests/fixtures/quantize").join(name);
    serde_json::from_str(&std::fs::read_to_string(&p).expect("fixture")).expect("json")
}

fn sha(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn convert_equals_llama_quantize_bit_for_bit() {
    let tmp = tempfile::tempdir().expect("tmp");
    for ty in ["q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k"] {
        let out = convert_smollm2(tmp.path(), ty);
        let want = fixture(&format!("llama_quantize_{ty}.json"));
        let want = want["tensors"].as_object().expect("tensors");
        let f = GgufFile::open(&out).expect("open");
        assert_eq!(f.tensors().len(), want.len(), "{ty}");
        for t in f.tensors() {
            let w = &want[&t.name];
            assert_eq!(
                t.ggml_type.name().to_ascii_lowercase(),
                w["type"].as_str().expect("type").to_ascii_lowercase(),
                "{ty}: type of {}",
                t.name
            );
            assert_eq!(
                sha(f.tensor_data(t)),
                w["sha256"],
                "{ty}: bytes of {}",
                t.name
            );
        }
        println!("{ty}: {} tensors identical to llama-quantize", want.len());
    }
}

/// Largest |ours - llama.cpp| over the fixture's `{ids, logits}`.
fn max_diff(logits: &[f32], want: &serde_json::Value) -> f32 {
    let ids = want["ids"].as_array().expect("ids");
    let values = want["logits"].as_array().expect("logits");
    ids.iter().zip(values).fold(0f32, |m, (id, v)| {
        let got = logits[id.as_u64().expect("id") as usize];
        m.max((got - v.as_f64().expect("v") as f32).abs())
    })
}

#[test]
fn every_type_runs_in_edge_runtime_like_llama_cpp() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fx = fixture("logits.json");
    let prompt = fx["prompt"].as_str().expect("prompt");
    let mut failures = Vec::new();
    for (ty, want) in fx["logits"].as_object().expect("logits") {
        let out = convert_smollm2(tmp.path(), ty);
        let model = match Model::load(&out, LoadOptions::default()) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                // The runtime's kernels cover F32, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K,
                // Q5_K, Q6_K; anything else must be a clear error, not a panic.
                println!("{ty}: edge-runtime does not load it: {e}");
                assert!(ty == "bf16", "{ty}: {e}");
                continue;
            }
        };
        let ids = model.tokenize(prompt, false).expect("tokenize");
        assert_eq!(ids.len() as u64, fx["n_tokens"].as_u64().expect("n"));
        // Token by token (the decode kernels), then in one batch (the prefill kernels); for
        // the K-quant mixes also token by token on the scalar kernels (`dot_q4_k_seq` and the
        // other twins the model calls where no SIMD is: compared with llama.cpp itself, not
        // only with their SIMD twins; Q4_0's is in edge-runtime's llama_cpp.rs). Observed: 0.
        let mut worst = 0f32;
        let mut logits = Vec::new();
        let scalar_too = ["q4_k_m", "q5_k_m", "q6_k"].contains(&ty.as_str());
        for (n_batch, scalar) in [(1, false), (64, false), (1, true)] {
            if scalar && !scalar_too {
                continue;
            }
            let mut s = Session::new(
                model.clone(),
                SessionOptions {
                    n_ctx: 256,
                    n_threads: 2,
                    n_batch,
                },
            )
            .expect("session");
            if scalar {
                s.force_scalar();
            }
            s.eval(&ids).expect("eval");
            let w = max_diff(s.logits(), want);
            let kernels = if scalar { "scalar" } else { s.isa().name() };
            println!("{ty}: batch {n_batch} ({kernels}): top-20 logits within {w:e} of llama.cpp");
            worst = worst.max(w);
            logits = s.logits().to_vec();
        }
        let logits = &logits;
        // llama.cpp repacks Q4_0/Q4_K weights for AVX2 and computes them with other kernels
        // (what it does by default, and what we follow); its plain path, recorded too, is shown
        // for scale: the two llama.cpp paths differ by ~0.27 on this prompt.
        if let Some(plain) = fx["logits_no_repack"].get(ty.as_str()) {
            let w = max_diff(logits, plain);
            println!("{ty}: {w:.4} from llama.cpp's plain (not repacked) path");
        }
        // Observed: 0 (bit-identical) for every quantized type, batch 1 and 64 alike; 1.4e-3
        // for F32 and 3.5e-3 for F16 (llama.cpp rounds the activations of F32/F16 weight
        // matmuls to F16 first), 4.1e-2 for BF16 (likewise to BF16).
        let limit = match ty.as_str() {
            "f32" => 5e-3,
            "f16" => 1e-2,
            "bf16" => 0.1,
            _ => 0.0,
        };
        if worst > limit {
            failures.push(format!("{ty}: {worst}"));
        }
    }
    assert!(
        failures.is_empty(),
        "logits differ from llama.cpp: {failures:?}"
    );
}

#[test]
fn round_trips_are_lossless() {
    let tmp = tempfile::tempdir().expect("tmp");
    // GGUF Q4_1 -> HF -> GGUF Q4_1 gives the same tensor bytes.
    let q41 = tmp.path().join("q4_1.gguf");
    convert(smollm2_hf(), &q41, &opts(FileType::Q4_1)).expect("convert");
    let (a, b) = (
        GgufFile::open(smollm2_gguf()).expect("a"),
        GgufFile::open(&q41).expect("b"),
    );
    for t in a.tensors() {
        let u = b.tensor(&t.name).expect("tensor");
        assert_eq!((u.ggml_type, &u.dims), (t.ggml_type, &t.dims), "{}", t.name);
        assert!(
            a.tensor_data(t) == b.tensor_data(u),
            "{}: bytes differ",
            t.name
        );
    }
    // HF -> GGUF F32 -> HF gives the same tensors.
    let f32 = tmp.path().join("f32.gguf");
    convert(smollm2_hf(), &f32, &opts(FileType::F32)).expect("convert");
    let back = tmp.path().join("back");
    quantize::to_hf::to_hf(&f32, &back, Dtype::F32, false).expect("to-hf");
    let x = SafetensorsFile::open(smollm2_hf().join("model.safetensors")).expect("x");
    let y = SafetensorsFile::open(back.join("model.safetensors")).expect("y");
    assert_eq!(x.tensors.len(), y.tensors.len());
    for (name, e) in &x.tensors {
        assert!(
            x.bytes(e) == y.bytes(&y.tensors[name]),
            "{name} differs after HF -> F32 -> HF"
        );
    }
    // Requantizing the shipped Q4_1 to Q4_K_M equals converting its HF form to Q4_K_M.
    let rq = tmp.path().join("rq.gguf");
    quantize::requantize::requantize(&smollm2_gguf(), &rq, FileType::Q4KM, &[], false)
        .expect("requantize");
    let direct = tmp.path().join("direct.gguf");
    convert(smollm2_hf(), &direct, &opts(FileType::Q4KM)).expect("convert");
    let (r, d) = (
        GgufFile::open(&rq).expect("r"),
        GgufFile::open(&direct).expect("d"),
    );
    for t in d.tensors() {
        let u = r.tensor(&t.name).expect("tensor");
        assert!(r.tensor_data(u) == d.tensor_data(t), "{}", t.name);
    }
}

#[test]
fn converted_metadata_is_complete() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("m.gguf");
    convert(smollm2_hf(), &out, &opts(FileType::Q8_0)).expect("convert");
    let f = GgufFile::open(&out).expect("open");
    let orig = GgufFile::open(smollm2_gguf()).expect("orig");
    for key in [
        "general.architecture",
        "llama.context_length",
        "llama.embedding_length",
        "llama.block_count",
        "llama.feed_forward_length",
        "llama.attention.head_count",
        "llama.attention.head_count_kv",
        "llama.rope.freq_base",
        "llama.attention.layer_norm_rms_epsilon",
        "tokenizer.ggml.model",
        "tokenizer.ggml.pre",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.unknown_token_id",
        "tokenizer.ggml.padding_token_id",
        "tokenizer.ggml.add_bos_token",
        "tokenizer.chat_template",
    ] {
        assert_eq!(f.metadata().get(key), orig.metadata().get(key), "{key}");
    }
    assert_eq!(
        f.metadata()
            .get("general.file_type")
            .and_then(|v| v.as_u64()),
        Some(7)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("dir") {
        let e = e.expect("e");
        if e.file_name() != "model.safetensors" {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

#[test]
fn bad_checkpoints_fail_clearly_and_leave_no_output() {
    let tmp = tempfile::tempdir().expect("tmp");
    let case = |name: &str, edit: &dyn Fn(&Path)| -> String {
        let d = tmp.path().join(name);
        copy_dir(smollm2_hf(), &d);
        std::os::unix::fs::symlink(
            smollm2_hf()
                .join("model.safetensors")
                .canonicalize()
                .expect("abs"),
            d.join("model.safetensors"),
        )
        .expect("link");
        edit(&d);
        let out = tmp.path().join(format!("{name}.gguf"));
        let err = convert(&d, &out, &opts(FileType::Q8_0))
            .expect_err(name)
            .to_string();
        assert!(!out.exists(), "{name}: partial output left behind");
        let leftovers = std::fs::read_dir(tmp.path())
            .expect("tmp")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().contains(".tmp"))
            })
            .count();
        assert_eq!(leftovers, 0, "{name}: temp file left behind");
        err
    };
    let e = case("shape", &|d| {
        let p = d.join("config.json");
        let mut c: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).expect("c")).expect("json");
        c["intermediate_size"] = 1024.into();
        std::fs::write(&p, c.to_string()).expect("w");
    });
    assert!(
        e.contains("shape") && e.contains("config.json implies"),
        "{e}"
    );
    let e = case("missing_shard", &|d| {
        std::fs::write(
            d.join("model.safetensors.index.json"),
            r#"{"weight_map": {"model.embed_tokens.weight": "model-00002-of-00002.safetensors"}}"#,
        )
        .expect("w");
    });
    assert!(
        e.contains("model-00002-of-00002.safetensors") && e.contains("missing"),
        "{e}"
    );
    let e = case("no_tokenizer", &|d| {
        std::fs::remove_file(d.join("tokenizer.json")).expect("rm");
    });
    assert!(e.contains("tokenizer.json"), "{e}");
    let e = case("truncated", &|d| {
        let p = d.join("model.safetensors");
        std::fs::remove_file(&p).expect("rm");
        let bytes = std::fs::read(smollm2_hf().join("model.safetensors")).expect("r");
        std::fs::write(&p, &bytes[..bytes.len() / 2]).expect("w");
    });
    assert!(e.contains("truncated"), "{e}");
    let e = case("wrong_dtype", &|d| {
        let p = d.join("model.safetensors");
        std::fs::remove_file(&p).expect("rm");
        let bytes = std::fs::read(smollm2_hf().join("model.safetensors")).expect("r");
        let text = String::from_utf8_lossy(&bytes[8..4096]).replacen("\"F32\"", "\"I32\"", 1);
        let mut out = bytes.clone();
        out[8..4096].copy_from_slice(text.as_bytes());
        std::fs::write(&p, out).expect("w");
    });
    assert!(e.contains("I32") && e.contains("not supported"), "{e}");
}

#[test]
fn llama31_checkpoint_gets_rope_freqs_and_llama3_tokenizer() {
    use llama_spec::hf::{write_checkpoint, WriteOptions};
    use llama_spec::LlamaConfig;
    let tmp = tempfile::tempdir().expect("tmp");
    let hf = tmp.path().join("hf");
    let config = LlamaConfig::from_json(
        r#"{"vocab_size": 128256, "hidden_size": 16, "intermediate_size": 32,
            "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
            "max_position_embeddings": 512, "rms_norm_eps": 1e-5,
            "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
              "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 64},
            "bos_token_id": 128000, "eos_token_id": 128009}"#,
    )
    .expect("config");
    let tokenizer = std::fs::read(repo().join("assets/llama3-tokenizer.json")).expect("assets");
    let write_opts = WriteOptions {
        dtype: Dtype::F32,
        extra_files: vec![
            ("tokenizer.json".into(), tokenizer),
            (
                "tokenizer_config.json".into(),
                br#"{"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                    "add_bos_token": true}"#
                    .to_vec(),
            ),
        ],
        ..WriteOptions::default()
    };
    let shapes = llama_spec::hf::hf_tensors(&config);
    write_checkpoint(&hf, &config, &write_opts, |name| {
        let n: usize = shapes
            .iter()
            .find(|(n, _)| n == name)
            .expect("shape")
            .1
            .iter()
            .product();
        Ok((0..n)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 5000.0)
            .collect())
    })
    .expect("write");
    let out = tmp.path().join("llama31.gguf");
    convert(&hf, &out, &opts(FileType::Q8_0)).expect("convert");
    let f = GgufFile::open(&out).expect("open");
    let t = f.tensor("rope_freqs.weight").expect("rope_freqs.weight");
    let want = config.rope_freqs().expect("llama3 scaling");
    let got = llama_spec::quant::dequantize_to_vec(t.ggml_type, f.tensor_data(t), want.len())
        .expect("f32");
    assert_eq!(got, want);
    assert_eq!(t.ggml_type, llama_spec::GgmlType::F32);
    let md = f.metadata();
    let s = |k: &str| md.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let u = |k: &str| md.get(k).and_then(|v| v.as_u64());
    assert_eq!(s("tokenizer.ggml.pre").as_deref(), Some("llama-bpe"));
    assert_eq!(u("tokenizer.ggml.bos_token_id"), Some(128000));
    assert_eq!(u("tokenizer.ggml.eos_token_id"), Some(128009));
    assert_eq!(
        md.get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.as_bool()),
        Some(true),
        "tokenizer_config.json's add_bos_token"
    );
    assert_eq!(u("llama.rope.dimension_count"), Some(8));
    // And back: to-hf gives the same tensors (Q/K un-permuted) as the Q8_0 values allow.
    let f32_out = tmp.path().join("llama31.f32.gguf");
    convert(&hf, &f32_out, &opts(FileType::F32)).expect("convert");
    let back = tmp.path().join("back");
    quantize::to_hf::to_hf(&f32_out, &back, Dtype::F32, false).expect("to-hf");
    let (x, y) = (
        SafetensorsFile::open(hf.join("model.safetensors")).expect("x"),
        SafetensorsFile::open(back.join("model.safetensors")).expect("y"),
    );
    for (name, e) in &x.tensors {
        assert!(x.bytes(e) == y.bytes(&y.tensors[name]), "{name}");
    }
}

/// Where our F32 file may differ from `convert_hf_to_gguf.py --outtype f32`'s (fixture from
/// tests/fixtures/make_converter_fixture.py): the converter derives `general.name`,
/// `general.finetune` and `general.size_label` from the directory name and parameter count
/// (ours: `--name`, or the directory name), and writes `llama.attention.key_length` /
/// `value_length` even when they equal `embedding_length / head_count` (llama.cpp computes
/// them then). Tensor order differs too (ours: the HF order, each layer's tensors together);
/// GGUF readers find tensors by name.
const CONVERTER_ONLY_KEYS: &[&str] = &[
    "general.name",
    "general.finetune",
    "general.size_label",
    "llama.attention.key_length",
    "llama.attention.value_length",
];

#[test]
fn convert_f32_equals_llama_cpps_convert_hf_to_gguf() {
    use llama_spec::gguf::{ArrayValue, MetadataValue};
    let tmp = tempfile::tempdir().expect("tmp");
    let out = convert_smollm2(tmp.path(), "f32");
    let f = GgufFile::open(&out).expect("open");
    let want = fixture("convert_hf_to_gguf_f32.json");
    let tensors = want["tensors"].as_object().expect("tensors");
    assert_eq!(f.tensors().len(), tensors.len());
    for t in f.tensors() {
        let e = &tensors[&t.name];
        assert_eq!(e["type"].as_str(), Some(t.ggml_type.name()), "{}", t.name);
        assert_eq!(
            e["sha256"].as_str(),
            Some(sha(f.tensor_data(t)).as_str()),
            "{}: bytes differ from convert_hf_to_gguf.py's",
            t.name
        );
    }
    let md = f.metadata();
    for (key, w) in want["metadata"].as_object().expect("metadata") {
        if key == "general.name" {
            // Ours comes from `--name`; it must be there.
            assert!(md.get(key).is_some(), "{key}");
        }
        if CONVERTER_ONLY_KEYS.contains(&key.as_str()) {
            continue;
        }
        let got = md.get(key).unwrap_or_else(|| panic!("{key}: missing"));
        let ok = match got {
            MetadataValue::String(s) => w.as_str() == Some(s.as_str()),
            MetadataValue::Bool(b) => w.as_bool() == Some(*b),
            MetadataValue::F32(x) => w.as_f64() == Some(f64::from(*x)),
            MetadataValue::Array(a) => {
                let text = match a {
                    ArrayValue::String(v) => v.join("\0"),
                    ArrayValue::I32(v) => v
                        .iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join(","),
                    other => panic!("{key}: an array of {other:?} is not in the fixture's form"),
                };
                w["array_len"].as_u64() == Some(a.len() as u64)
                    && w["sha256"].as_str() == Some(sha(text.as_bytes()).as_str())
            }
            other => other.as_u64() == w.as_u64(),
        };
        let shown = match got {
            MetadataValue::Array(a) => format!("an array of {}", a.len()),
            other => format!("{other:?}"),
        };
        assert!(ok, "{key}: ours {shown} vs convert_hf_to_gguf.py's {w}");
    }
}
