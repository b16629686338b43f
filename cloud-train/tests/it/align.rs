//! End to end: `sft` then `dpo` on the bundled demo data (configs/sft-tiny.toml and
//! dpo-tiny.toml, started from a random-init tiny Llama with the Llama-3 tokenizer so that the
//! test does not need a CPT run first); each checkpoint goes through `quantize convert` into a
//! GGUF that edge-runtime loads and chats with, with the same chat template.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use common::{cloud_train, run_ok};

fn run(args: &[&str], sets: &[String]) -> String {
    let mut c = cloud_train();
    c.args(args);
    for s in sets {
        c.arg("--set").arg(s);
    }
    run_ok(&mut c)
}

fn metrics(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

/// Convert a checkpoint to Q8_0 and chat with it in edge-runtime.
fn chat_with(ckpt: &Path, gguf: &Path) -> String {
    let opts = quantize::convert::ConvertOptions {
        ftype: quantize::policy::FileType::Q8_0,
        overrides: Vec::new(),
        name: None,
        progress: false,
    };
    quantize::convert::convert(ckpt, gguf, &opts).expect("quantize convert");
    let model = Arc::new(
        edge_runtime::Model::load(gguf, edge_runtime::LoadOptions::default()).expect("load gguf"),
    );
    // The GGUF carries the training template: the runtime renders a chat as training did.
    let msgs = [edge_runtime::Message::user("I feel lonely today.")];
    let text = model.apply_chat_template(&msgs, true).expect("template");
    assert_eq!(
        text,
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nI feel lonely today.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    let (reply, pieces) = common::chat_gguf(gguf, "I feel lonely today.", 12);
    assert!(pieces > 0, "no tokens generated");
    reply
}

#[test]
#[ignore = "full tier (scripts/test.sh --full): ~55 s on 2 cores; CI runs SFT and DPO in align_parity.rs and distributed.rs"]
fn sft_then_dpo_on_the_demo_data() {
    let tmp = tempfile::tempdir().expect("tmp");
    let model = "model={config=\"configs/models/tiny.json\", tokenizer=\"assets/llama3-tokenizer.json\", chat_template=\"llama3\"}".to_string();
    let sft = tmp.path().join("sft");
    let text = run(
        &["sft", "--config", "configs/sft-tiny.toml"],
        &[
            model,
            format!("output.dir={sft:?}"),
            "train.epochs=6".into(),
        ],
    );
    println!("{text}");
    let m = metrics(&sft);
    let loss: Vec<f64> = m
        .iter()
        .map(|l| l["loss"].as_f64().expect("loss"))
        .collect();
    let n = loss.len();
    assert!(n >= 10, "{n} steps");
    let (head, tail) = (
        loss[..3].iter().sum::<f64>() / 3.0,
        loss[n - 3..].iter().sum::<f64>() / 3.0,
    );
    assert!(tail < head - 1.0, "SFT loss did not fall: {loss:?}");
    let val: Vec<f64> = m.iter().filter_map(|l| l["val_loss"].as_f64()).collect();
    assert!(
        val.len() >= 2 && val[val.len() - 1] < val[0],
        "validation loss did not fall: {val:?}"
    );
    let sft_ckpt = sft.join("latest");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(sft_ckpt.join(f).is_file(), "{f}");
    }
    let reply = chat_with(&sft_ckpt, &tmp.path().join("sft.gguf"));
    println!("sft model says: {reply:?}");

    let dpo = tmp.path().join("dpo");
    let text = run(
        &["dpo", "--config", "configs/dpo-tiny.toml"],
        &[
            format!("model.path={sft_ckpt:?}"),
            format!("output.dir={dpo:?}"),
        ],
    );
    println!("{text}");
    let m = metrics(&dpo);
    let last = m.last().expect("steps");
    let margin = last["rewards/margins"].as_f64().expect("margins");
    let acc = last["rewards/accuracies"].as_f64().expect("accuracies");
    assert!(
        margin > 0.0 && acc > 0.5,
        "DPO did not separate chosen from rejected: {last}"
    );
    // Step 1 starts from the reference: zero rewards, loss ln 2.
    assert!(
        (m[0]["loss"].as_f64().expect("loss") - std::f64::consts::LN_2).abs() < 1e-4,
        "{}",
        m[0]
    );
    assert!(dpo.join("reference_logps.json").is_file());
    let reply = chat_with(&dpo.join("latest"), &tmp.path().join("dpo.gguf"));
    println!("dpo model says: {reply:?}");
}
