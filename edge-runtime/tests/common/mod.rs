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
