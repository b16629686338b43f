//! `quantize inspect` on the real SmolLM2 file and on a broken one.

use std::path::PathBuf;
use std::process::Command;

fn smollm2() -> PathBuf {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} missing: run scripts/fetch-assets.sh",
        p.display()
    );
    p
}

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_quantize"))
        .args(args)
        .output()
        .expect("run quantize");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn table_lists_metadata_and_tensors_like_gguf_dump() {
    let p = smollm2();
    let (ok, out, err) = run(&["inspect", p.to_str().expect("utf8")]);
    assert!(ok, "{err}");
    assert!(out.contains("* Dumping 36 key/value pair(s)"), "{out}");
    assert!(out.contains("general.architecture = \"llama\""), "{out}");
    assert!(
        out.contains("[STRING]   |    49152 | tokenizer.ggml.tokens"),
        "{out}"
    );
    assert!(out.contains("* Dumping 272 tensor(s)"));
    assert!(
        out.contains("|   576,   192,     1,     1 | Q4_1    | blk.0.attn_k.weight"),
        "{out}"
    );
}

#[test]
fn json_output_parses() {
    let p = smollm2();
    let (ok, out, err) = run(&["inspect", "--json", p.to_str().expect("utf8")]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["metadata"]["llama.block_count"]["value"], 30);
    assert_eq!(v["metadata"]["llama.block_count"]["type"], "UINT32");
    assert_eq!(v["tensors"].as_array().map(Vec::len), Some(272));
}

#[test]
fn bad_file_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("inspect-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let bad = dir.join("not-a-model.gguf");
    std::fs::write(&bad, b"GGUF\x02\0\0\0garbage").expect("write");
    let (ok, _, err) = run(&["inspect", bad.to_str().expect("utf8")]);
    assert!(!ok);
    assert!(
        err.contains("not-a-model.gguf") && err.contains("version 2"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
