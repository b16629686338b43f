//! `cloud-train pipeline`, shortened (a step or two per training stage, 2 items per task), on
//! the real SmolLM2 GGUF: every stage's output exists, a failed stage says which and why, the
//! re-run resumes there, and the final Q4_K_M GGUF chats through edge-runtime.

use crate::common;

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
eval_tasks = ["eprstmt", "emotion"]
eval_limit = 2
task_limits = {{ emotion = 3 }}

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

[csfte]
config = {csfte}
sft_data = [{sft_data}]
emotion_data = [{emotion}]
emotion_share = 0.75
set = ["train.epochs=0.1", "output.eval_every=100"]

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
        csfte = p("configs/csfte-smollm2.toml"),
        sft_data = p("configs/data/sft-demo.jsonl"),
        emotion = p("configs/data/emotional-support.jsonl"),
    )
}

#[test]
#[ignore = "full tier (scripts/test.sh --full): every stage end to end, ~4 min on 2 cores"]
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

    // Fixed: the re-run skips the six finished stages and resumes at DPO.
    std::fs::write(
        &cfg,
        config(&dir, r#""train.epochs=0.3", "output.eval_every=100""#),
    )
    .expect("write");
    let text = run_ok(cloud_train().args(["pipeline", "--config", cfg.to_str().expect("utf8")]));
    for s in ["base", "data", "eval-before", "cpt", "sft", "csfte"] {
        assert!(text.contains(&format!("{s}: done already")), "{s}: {text}");
    }
    for s in ["dpo", "export", "quantize", "eval-after", "report"] {
        assert!(text.contains(&format!(" {s}: done in")), "{s}: {text}");
    }
    for p in [
        "base/config.json",
        "data/en/manifest.json",
        "data/zh/manifest.json",
        "eval-before.json",
        "cpt/latest/model.safetensors",
        "sft/latest/model.safetensors",
        "csfte/train.jsonl",
        "csfte/latest/model.safetensors",
        "dpo/latest/model.safetensors",
        "final-hf/model.safetensors",
        "final.Q4_K_M.gguf",
        "eval-after.json",
        "csfte/eval-sft.json",
        "csfte/eval-csfte.json",
        "report/table4.md",
        "report/table5.csv",
        "report/report.png",
        "stages.json",
        "summary.md",
    ] {
        assert!(dir.join(p).exists(), "{p} missing: {text}");
    }
    let summary = std::fs::read_to_string(dir.join("summary.md")).expect("summary");
    assert_eq!(
        summary.lines().filter(|l| l.starts_with("| ")).count(),
        13,
        "{summary}"
    );
    // C-SFT-E: 24 SFT and 72 emotional-support dialogues, the Chinese-token share before and
    // after it, and DPO continued from it.
    let stages: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("stages.json")).expect("stages"))
            .expect("json");
    let csfte = &stages["csfte"];
    assert_eq!(
        (
            csfte["mix"]["sft"].as_u64(),
            csfte["mix"]["emotion"].as_u64()
        ),
        (Some(24), Some(72)),
        "{csfte}"
    );
    assert!(
        csfte["zh_before"].is_number() && csfte["zh_after"].is_number(),
        "{csfte}"
    );
    // ... and the emotional-intelligence task before and after it (its own limit: 3 items).
    for when in ["ei_before", "ei_after"] {
        let e = &csfte[when]["emotion"];
        assert!(
            e["acc"].is_number() && e["macro_f1"].is_number(),
            "{when}: {csfte}"
        );
    }
    assert!(summary.contains("emotion acc"), "{summary}");
    let after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("eval-after.json")).expect("eval"))
            .expect("json");
    let n = |t: &str| after["tasks"][t]["n"].as_u64();
    assert_eq!(
        (n("eprstmt"), n("emotion"), n("zh-fraction")),
        (Some(2), Some(3), Some(2))
    );
    // Tables 4 and 5 over the original, SFT, C-SFT-E and final models (Table 3: no task ran).
    let table5 = std::fs::read_to_string(dir.join("report/table5.md")).expect("table5");
    for model in [
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "sft.Q8_0.gguf",
        "csfte.Q8_0.gguf",
        "final.Q4_K_M.gguf",
    ] {
        assert!(
            table5.contains(&format!("| {model} |")),
            "{model}: {table5}"
        );
    }
    assert_eq!(stages["report"]["tables"].as_u64(), Some(2), "{stages}");
    let dpo_state = std::fs::read_to_string(dir.join("dpo/metrics.jsonl")).expect("dpo metrics");
    assert!(!dpo_state.is_empty());
    assert!(summary.contains("emotional-support dialogues"), "{summary}");
    assert!(
        summary.contains("zh tokens") && summary.contains("decode") && summary.contains(" MB"),
        "{summary}"
    );
    assert!(text.contains("edge-chat -- --model"), "{text}");

    // Everything done: a third run trains nothing.
    let text = run_ok(cloud_train().args(["pipeline", "--config", cfg.to_str().expect("utf8")]));
    assert_eq!(text.matches("done already").count(), 11, "{text}");

    // The final GGUF chats through edge-runtime with its chat template.
    let (reply, pieces) = common::chat_gguf(&dir.join("final.Q4_K_M.gguf"), "我今天有点难过。", 16);
    assert!(pieces > 0, "{reply:?}");
}
