//! Shared test helpers: fixture paths and a minimal `.npy` reader (the fixtures are written
//! by numpy in `tests/fixtures/make_train_fixtures.py`).
#![allow(dead_code)]

use std::path::PathBuf;

use burn::prelude::*;

/// The backend under test: flex (CPU) unless `CLOUD_TRAIN_TEST_BACKEND` names another one built
/// into this test binary (`cargo test -p cloud-train --features wgpu` with
/// `CLOUD_TRAIN_TEST_BACKEND=wgpu`).
pub fn device() -> Device {
    let name = std::env::var("CLOUD_TRAIN_TEST_BACKEND").unwrap_or_else(|_| "flex".into());
    let backend: cloud_train::device::Backend = name.parse().expect("CLOUD_TRAIN_TEST_BACKEND");
    backend.device().expect("backend in this build")
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/train")
        .join(name)
}

/// (little-endian data bytes, shape, numpy dtype descr) of a C-order `.npy` file.
fn npy(path: &std::path::Path) -> (Vec<u8>, Vec<usize>, String) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}", path.display());
    let (hlen, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(&bytes[start..start + hlen]).expect("ascii header");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let descr = header
        .split("'descr': '")
        .nth(1)
        .and_then(|r| r.split('\'').next())
        .expect("descr")
        .to_string();
    let shape_txt = header
        .split("'shape': (")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .expect("shape");
    let shape = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("dim"))
        .collect();
    (bytes[start + hlen..].to_vec(), shape, descr)
}

pub fn npy_f32(path: impl Into<PathBuf>) -> (Vec<f32>, Vec<usize>) {
    let (b, shape, descr) = npy(&path.into());
    assert_eq!(descr, "<f4");
    let v = b
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (v, shape)
}

pub fn npy_i64(path: impl Into<PathBuf>) -> (Vec<i64>, Vec<usize>) {
    let (b, shape, descr) = npy(&path.into());
    assert_eq!(descr, "<i8");
    let v = b
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    (v, shape)
}

/// The fixture's input ids as a `[batch, seq]` tensor.
pub fn ref_ids(case: &str, device: &Device) -> Tensor<2, Int> {
    let (ids, shape) = npy_i64(fixture(case).join("ref_ids.npy"));
    Tensor::from_data(TensorData::new(ids, [shape[0], shape[1]]), device)
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .as_slice::<f32>()
        .expect("f32 data")
        .to_vec()
}

/// max |a - b| / max |b|: the relative error the parity targets are stated in.
pub fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

pub fn reference_loss(case: &str) -> f64 {
    let text = std::fs::read_to_string(fixture(case).join("reference.json")).expect("json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    v["loss"].as_f64().expect("loss")
}

pub const CASES: [&str; 3] = ["gqa_llama3", "mha_tied", "mha_tied_bf16"];

/// The workspace root (the CLI tests run there, as users do).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("root")
}

/// The `cloud-train` binary, to run from the workspace root.
pub fn cloud_train() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cloud-train"));
    c.current_dir(root());
    c
}

/// Prepared en/zh sample corpora (configs/corpora) in `dir`.
pub fn prepare_corpora(dir: &std::path::Path) {
    for lang in ["en", "zh"] {
        let text = run_ok(
            cloud_train()
                .args(["data", "prepare", "--in"])
                .arg(format!("configs/corpora/{lang}"))
                .arg("--out")
                .arg(dir.join(lang))
                .args([
                    "--tokenizer",
                    "assets/llama3-tokenizer.json",
                    "--val-fraction",
                    "0.25",
                ]),
        );
        assert!(text.contains("documents"), "{text}");
    }
}

/// Run `c`; its stdout and stderr, or a panic with them when it failed.
pub fn run_ok(c: &mut std::process::Command) -> String {
    let out = c.output().expect("spawn");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{c:?} failed:\n{text}");
    text
}

/// Chat with a GGUF file through edge-runtime (2 threads): the reply and the number of pieces
/// streamed.
pub fn chat_gguf(gguf: &std::path::Path, prompt: &str, max_tokens: usize) -> (String, usize) {
    let model = std::sync::Arc::new(
        edge_runtime::Model::load(gguf, edge_runtime::LoadOptions::default()).expect("load gguf"),
    );
    let mut session = edge_runtime::Session::new(
        model,
        edge_runtime::SessionOptions {
            n_threads: 2,
            ..Default::default()
        },
    )
    .expect("session");
    let opts = edge_runtime::GenerateOptions {
        max_tokens,
        ..Default::default()
    };
    let mut pieces = 0;
    let mut reply = String::new();
    for p in session
        .chat(&[edge_runtime::Message::user(prompt)], opts)
        .expect("chat")
    {
        reply.push_str(&p.expect("piece").text);
        pieces += 1;
    }
    (reply, pieces)
}
