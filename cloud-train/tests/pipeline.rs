//! `cloud-train pipeline`, shortened (a step or two per training stage, 2 items per task), on
//! the real SmolLM2 GGUF: every stage's output exists, a failed stage says which and why, the
//! re-run resumes there, and the final Q4_K_M GGUF chats through edge-runtime.

mod common;

use common::{cloud_train, root, run_ok};

fn config(dir: &std::path::Path, dpo_set: &str) -> String {
    let r = root();
    let p = |rel: &str| format!("{:?}", r.join(rel).display().to_string());
    format!(
        r#"dir = {dir:?}
base_gguf = {gguf}
quant = "q4_k_m"
threads = 2
eval_data = {data}
eval_tasks = ["eprstmt"]
eval_limit = 2

[[corpus]]
name = "en"
path = {en}
role = "base"

[[corpus]]
name = "zh"
path = {zh}
role = "additional"

[cpt]
config = {cpt}
set = ["train.steps=2", "train.warmup_steps=0", "output.save_every=2", "output.eval_every=2"]

[sft]
config = {sft}
set = ["train.epochs=0.3", "output.eval_every=100"]

[dpo]
config = {dpo}
set = [{dpo_set}]
"#,
        dir = dir.display().to_string(),
        gguf = p("assets/SmolLM2-135M-Instruct.Q4_1.gguf"),
        data = p("configs/eval-data"),
        en = p("configs/corpora/en"),
        zh = p("configs/corpora/zh"),
        cpt = p("configs/cpt-smollm2-demo.toml"),
        sft = p("configs/sft-smollm2.toml"),
        dpo = p("configs/dpo-smollm2.toml"),
    )
}

#[test]
#[ignore = "full tier (scripts/test.sh --full): every stage end to end, ~90 s on 2 cores"]
fn pipeline_runs_every_stage_and_resumes_after_a_failure() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("run");
    let cfg = tmp.path().join("pipeline.toml");

    // A DPO stage that cannot start (a negative learning rate): the error names the stage.
    std::fs::write(&cfg, config(&dir, r#""train.epochs=0.3", "train.lr=-1""#)).expect("write");
    let out = cloud_train()
        .args(["pipeline", "--config", cfg.to_str().expect("utf8")])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pipeline stage \"dpo\" failed") && err.contains("lr"),
        "{err}"
    );

    // Fixed: the re-run skips the five finished stages and resumes at DPO.
    std::fs::write(
        &cfg,
        config(&dir, r#""train.epochs=0.3", "output.eval_every=100""#),
    )
    .expect("write");
    let text = run_ok(cloud_train().args(["pipeline", "--config", cfg.to_str().expect("utf8")]));
    for s in ["base", "data", "eval-before", "cpt", "sft"] {
        assert!(text.contains(&format!("{s}: done already")), "{s}: {text}");
    }
    for s in ["dpo", "export", "quantize", "eval-after"] {
        assert!(text.contains(&format!(" {s}: done in")), "{s}: {text}");
    }
    for p in [
        "base/config.json",
        "data/en/manifest.json",
        "data/zh/manifest.json",
        "eval-before.json",
        "cpt/latest/model.safetensors",
        "sft/latest/model.safetensors",
        "dpo/latest/model.safetensors",
        "final-hf/model.safetensors",
        "final.Q4_K_M.gguf",
        "eval-after.json",
        "stages.json",
        "summary.md",
    ] {
        assert!(dir.join(p).exists(), "{p} missing: {text}");
    }
    let summary = std::fs::read_to_string(dir.join("summary.md")).expect("summary");
    assert_eq!(
        summary.lines().filter(|l| l.starts_with("| ")).count(),
        11,
        "{summary}"
    );
    assert!(
        summary.contains("zh tokens") && summary.contains("decode") && summary.contains(" MB"),
        "{summary}"
    );
    assert!(text.contains("edge-chat -- --model"), "{text}");

    // Everything done: a third run trains nothing.
    let text = run_ok(cloud_train().args(["pipeline", "--config", cfg.to_str().expect("utf8")]));
    assert_eq!(text.matches("done already").count(), 9, "{text}");

    // The final GGUF chats through edge-runtime with its chat template.
    let (reply, pieces) = common::chat_gguf(&dir.join("final.Q4_K_M.gguf"), "我今天有点难过。", 16);
    assert!(pieces > 0, "{reply:?}");
}
