#![allow(dead_code)]
use std::path::PathBuf;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The shipped SmolLM2 GGUF; fetched by scripts/fetch-assets.sh (CI runs it first).
pub fn smollm2() -> PathBuf {
    let p = repo().join("assets/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-assets.sh",
        p.display()
    );
    p
}

pub fn llama3_tokenizer() -> PathBuf {
    let p = repo().join("assets/llama3-tokenizer.json");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-assets.sh",
        p.display()
    );
    p
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}
