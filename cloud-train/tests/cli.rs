//! The `cloud-train` binary end to end: init -> resave -> score with the real Llama-3 tokenizer.

use std::path::{Path, PathBuf};
use std::process::Command;

fn exe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cloud-train"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn cloud-train");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tiny_llama3(dir: &Path) -> PathBuf {
    // The real Llama-3 vocabulary (128 256 tokens) on a 2-layer, 32-wide model.
    let cfg = dir.join("config.json");
    std::fs::write(
        &cfg,
        r#"{"vocab_size": 128256, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 512, "rope_theta": 500000.0,
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
            "tie_word_embeddings": true, "bos_token_id": 128000, "eos_token_id": 128009}"#,
    )
    .expect("config");
    let tok = dir.join("tok");
    std::fs::create_dir_all(&tok).expect("mkdir");
    std::fs::copy(
        root().join("assets/llama3-tokenizer.json"),
        tok.join("tokenizer.json"),
    )
    .expect("assets/llama3-tokenizer.json (run scripts/fetch-assets.sh)");
    cfg
}

#[test]
fn init_resave_score() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cfg = tiny_llama3(tmp.path());
    let a = tmp.path().join("a");
    let out = run(exe()
        .args(["init", "--seed", "3", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&a)
        .arg("--tokenizer-from")
        .arg(tmp.path().join("tok")));
    assert!(out.contains("parameters, seed 3"), "{out}");
    assert!(a.join("tokenizer.json").exists());

    // Same seed, same weights.
    let b = tmp.path().join("b");
    run(exe()
        .args(["init", "--seed", "3", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&b));
    assert_eq!(
        std::fs::read(a.join("model.safetensors")).expect("a"),
        std::fs::read(b.join("model.safetensors")).expect("b")
    );

    let c = tmp.path().join("c");
    run(exe()
        .args([
            "resave",
            "--dtype",
            "bf16",
            "--shard-size",
            "3MB",
            "--model",
        ])
        .arg(&a)
        .arg("--out")
        .arg(&c));
    assert!(c.join("model.safetensors.index.json").exists(), "sharded");

    let text = tmp.path().join("t.txt");
    std::fs::write(
        &text,
        "I feel lonely today. Can you talk with me? 我最近压力很大，晚上总是睡不着。".repeat(8),
    )
    .expect("text");
    let out = run(exe()
        .args(["score", "--seq-len", "64", "--batch", "2", "--model"])
        .arg(&c)
        .arg("--text")
        .arg(&text));
    // A random model is about uniform over the vocabulary: perplexity near 128 256.
    let ppl: f64 = out
        .split("perplexity ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no perplexity in {out}"));
    assert!((60_000.0..260_000.0).contains(&ppl), "{out}");
}

#[test]
fn bad_arguments_are_clear() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = exe()
        .args(["score", "--text", "nope.txt", "--model"])
        .arg(tmp.path().join("missing"))
        .output()
        .expect("spawn");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("missing") && err.contains("config.json"),
        "{err}"
    );

    let cfg = tiny_llama3(tmp.path());
    let out = exe()
        .args(["init", "--dtype", "q4", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(tmp.path().join("x"))
        .output()
        .expect("spawn");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("expected f32, f16 or bf16"), "{err}");
    assert!(!tmp.path().join("x").exists());
}
