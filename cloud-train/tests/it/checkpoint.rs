//! HF checkpoint save/load: round trips, sharding, dtypes, and clear errors on bad input that
//! leave no partial output behind.

use crate::common;

use std::path::Path;

use cloud_train::checkpoint::{self, safetensors::Dtype, SaveOptions};
use common::*;

fn logits(dir: &Path, case: &str) -> Vec<f32> {
    let (model, _) = checkpoint::load(dir, &device()).expect("load");
    to_vec(model.forward(ref_ids(case, &device())))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

#[test]
fn save_then_load_gives_identical_logits() {
    let tmp = tempfile::tempdir().expect("tmp");
    for case in ["gqa_llama3", "mha_tied"] {
        let (model, config) = checkpoint::load(fixture(case), &device()).expect("load");
        let want = to_vec(model.forward(ref_ids(case, &device())));
        let out = tmp.path().join(case);
        let opts = SaveOptions {
            dtype: Dtype::F32,
            max_shard_bytes: 50_000,
            tokenizer_from: Some(fixture(case)),
            ..SaveOptions::default()
        };
        checkpoint::save(&model, &config, &out, &opts).expect("save");
        let shards = std::fs::read_dir(&out)
            .expect("out")
            .filter(|e| {
                e.as_ref()
                    .map(|e| e.file_name().to_string_lossy().ends_with(".safetensors"))
                    .unwrap_or(false)
            })
            .count();
        assert!(shards > 2, "{case}: {shards} shards for a 50 kB limit");
        assert!(out.join("model.safetensors.index.json").exists());
        assert!(
            out.join("generation_config.json").exists(),
            "side files copied"
        );
        assert_eq!(logits(&out, case), want, "{case}: f32 round trip is exact");

        // Saving over an existing checkpoint replaces it whole (fewer shards now).
        let one = SaveOptions {
            max_shard_bytes: 1 << 30,
            ..opts.clone()
        };
        checkpoint::save(&model, &config, &out, &one).expect("save again");
        let names: Vec<String> = std::fs::read_dir(&out)
            .expect("out")
            .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.contains(&"model.safetensors".to_string()),
            "{names:?}"
        );
        assert!(!names.iter().any(|n| n.starts_with("model-")), "{names:?}");
        assert_eq!(logits(&out, case), want);
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
            .expect("tmp")
            .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
    }
}

#[test]
fn bf16_save_rounds_like_the_bf16_fixture() {
    // mha_tied_bf16 is mha_tied rounded to BF16 by torch: our BF16 writer must agree.
    let tmp = tempfile::tempdir().expect("tmp");
    let (model, config) = checkpoint::load(fixture("mha_tied"), &device()).expect("load");
    let out = tmp.path().join("bf16");
    let opts = SaveOptions {
        dtype: Dtype::BF16,
        ..SaveOptions::default()
    };
    checkpoint::save(&model, &config, &out, &opts).expect("save");
    let ours = std::fs::read(out.join("model.safetensors")).expect("ours");
    let torch_file = cloud_train::checkpoint::safetensors::SafetensorsFile::open(
        fixture("mha_tied_bf16").join("model.safetensors"),
    )
    .expect("torch bf16");
    let ours_file =
        cloud_train::checkpoint::safetensors::SafetensorsFile::open(out.join("model.safetensors"))
            .expect("ours bf16");
    assert!(!ours.is_empty());
    for (name, e) in &torch_file.tensors {
        let o = &ours_file.tensors[name];
        assert_eq!((o.dtype, &o.shape), (Dtype::BF16, &e.shape), "{name}");
        assert_eq!(
            ours_file.bytes(o),
            torch_file.bytes(e),
            "{name}: same BF16 bits"
        );
    }
    assert_eq!(
        logits(&out, "mha_tied_bf16"),
        logits(&fixture("mha_tied_bf16"), "mha_tied_bf16")
    );
}

/// Load `dir` and return the error text.
fn load_err(dir: &Path) -> String {
    match checkpoint::load(dir, &device()) {
        Ok(_) => panic!("{} loaded but is broken", dir.display()),
        Err(e) => e.to_string(),
    }
}

/// Rewrite one safetensors header in place through `edit`.
fn edit_header(file: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let bytes = std::fs::read(file).expect("read");
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8")) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).expect("json");
    edit(&mut header);
    let mut h = serde_json::to_vec(&header).expect("json");
    while h.len() < n {
        h.push(b' ');
    }
    assert_eq!(h.len(), n, "edit must keep the header length");
    let mut out = (n as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(file, out).expect("write");
}

#[test]
fn bad_checkpoints_give_clear_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let case = |name: &str| {
        let d = tmp.path().join(name);
        copy_dir(&fixture("gqa_llama3"), &d);
        d
    };

    let d = case("missing_shard");
    std::fs::remove_file(d.join("model-00003-of-00006.safetensors")).expect("rm");
    let e = load_err(&d);
    assert!(
        e.contains("model-00003-of-00006.safetensors") && e.contains("missing"),
        "{e}"
    );

    let d = case("truncated");
    let f = d.join("model-00006-of-00006.safetensors");
    let len = std::fs::metadata(&f).expect("meta").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&f)
        .expect("open");
    file.set_len(len - 100).expect("truncate");
    let e = load_err(&d);
    assert!(
        e.contains("model-00006-of-00006.safetensors") && e.contains("truncated"),
        "{e}"
    );

    let d = case("wrong_dtype");
    edit_header(&d.join("model-00002-of-00006.safetensors"), |h| {
        for (k, v) in h.as_object_mut().expect("obj") {
            if k != "__metadata__" {
                v["dtype"] = "I32".into();
            }
        }
    });
    let e = load_err(&d);
    assert!(e.contains("I32") && e.contains("not supported"), "{e}");

    let d = case("wrong_shape");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).expect("cfg"))
            .expect("json");
    cfg["intermediate_size"] = 128.into();
    std::fs::write(d.join("config.json"), cfg.to_string()).expect("write");
    let e = load_err(&d);
    assert!(
        e.contains("shape") && e.contains("config.json implies"),
        "{e}"
    );

    let d = case("no_weights");
    for e in std::fs::read_dir(&d).expect("d") {
        let p = e.expect("e").path();
        if p.to_string_lossy().contains("safetensors") {
            std::fs::remove_file(p).expect("rm");
        }
    }
    let e = load_err(&d);
    assert!(e.contains("not an HF safetensors checkpoint"), "{e}");
}

#[test]
fn failed_save_leaves_nothing_and_never_replaces_other_folders() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (model, config) = checkpoint::load(fixture("mha_tied"), &device()).expect("load");
    // A config that disagrees with the model: the save fails before anything is visible.
    let mut wrong = config.clone();
    wrong.intermediate_size += 1;
    let out = tmp.path().join("out");
    let e = checkpoint::save(&model, &wrong, &out, &SaveOptions::default())
        .expect_err("mismatched config");
    assert!(e.to_string().contains("no parameter"), "{e}");
    assert!(!out.exists());

    // An existing folder that is not a checkpoint is never replaced.
    let docs = tmp.path().join("docs");
    std::fs::create_dir(&docs).expect("mkdir");
    std::fs::write(docs.join("notes.txt"), "keep me").expect("write");
    let e = checkpoint::save(&model, &config, &docs, &SaveOptions::default()).expect_err("refuses");
    assert!(e.to_string().contains("refusing to replace"), "{e}");
    assert_eq!(
        std::fs::read_to_string(docs.join("notes.txt")).expect("kept"),
        "keep me"
    );
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("tmp")
        .map(|e| e.expect("e").file_name())
        .collect();
    assert_eq!(names.len(), 1, "no staging left: {names:?}");
}
