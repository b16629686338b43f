//! The evaluation harness on trainer checkpoints: multiple-choice log-likelihoods of the burn
//! model equal transformers' (tests/fixtures/make_eval_model_fixtures.py, a tiny random Llama
//! with a byte-level tokenizer), and the same tasks give the same answers through the burn
//! model and through edge-runtime on the F16 GGUF export of the checkpoint.

use crate::common;

use std::path::PathBuf;

use cloud_train::eval::BurnModel;
use llm_eval::backend::encode_pair;
use llm_eval::{EdgeModel, LanguageModel, RunOptions};

fn tiny() -> PathBuf {
    common::root().join("tests/fixtures/eval/tiny_byte")
}

fn fixture() -> Vec<serde_json::Value> {
    let p = common::root().join("tests/fixtures/eval/loglik.json");
    let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&s).expect("loglik.json")
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn export_f16(dir: &std::path::Path) -> PathBuf {
    let gguf = dir.join("tiny-f16.gguf");
    let opts = quantize::convert::ConvertOptions {
        ftype: quantize::policy::FileType::F16,
        overrides: Vec::new(),
        name: None,
        progress: false,
    };
    quantize::convert::convert(&tiny(), &gguf, &opts).expect("quantize convert");
    gguf
}

#[test]
fn loglikelihoods_equal_transformers() {
    let mut burn = BurnModel::load(&tiny(), &common::device()).expect("load");
    let tmp = tempfile::tempdir().expect("tmp");
    let mut edge = EdgeModel::load(&export_f16(tmp.path()), 2048, 2).expect("gguf");
    let cases = fixture();
    let mut reqs = Vec::new();
    for c in &cases {
        let ctx = c["context"].as_str().expect("context");
        let cont = c["continuation"].as_str().expect("continuation");
        for m in [&burn as &dyn LanguageModel, &edge as &dyn LanguageModel] {
            let r = encode_pair(m, ctx, cont).expect("encode");
            assert_eq!(
                r.context,
                ids(&c["context_ids"]),
                "{ctx:?} via {}",
                m.name()
            );
            assert_eq!(r.continuation, ids(&c["continuation_ids"]), "{cont:?}");
        }
        reqs.push(encode_pair(&burn, ctx, cont).expect("encode"));
    }
    // All in one call (batched, right-padded) and one by one: the same numbers.
    let batched = burn.loglikelihood(&reqs).expect("burn");
    let (mut worst, mut worst_edge) = (0f64, 0f64);
    for (i, c) in cases.iter().enumerate() {
        let want = c["logprob"].as_f64().expect("logprob");
        let single = burn.loglikelihood(&reqs[i..=i]).expect("single")[0];
        assert!(
            (single.logprob - batched[i].logprob).abs() < 1e-4,
            "case {i}: padding changed it"
        );
        let err = (batched[i].logprob - want).abs();
        worst = worst.max(err);
        // Observed: at most 1.1e-5 (summed f32 log-probabilities).
        assert!(
            err < 5e-5,
            "case {i}: burn {} vs transformers {want}",
            batched[i].logprob
        );
        assert_eq!(
            batched[i].greedy,
            c["greedy"].as_bool().expect("greedy"),
            "case {i}"
        );
        let e = edge.loglikelihood(&reqs[i..=i]).expect("edge")[0];
        worst_edge = worst_edge.max((e.logprob - want).abs());
        // F16 weights and F16 KV cache: a few 1e-3 per token.
        assert!(
            (e.logprob - want).abs() < 0.05 * reqs[i].continuation.len() as f64,
            "case {i}: edge {} vs {want}",
            e.logprob
        );
    }
    println!(
        "max |burn - transformers| = {worst:.2e}, max |edge F16 - transformers| = {worst_edge:.2e}"
    );
    // Observed: 3.2e-2 over a whole continuation.
    assert!(worst_edge < 0.1, "edge F16 vs transformers: {worst_edge}");
}

#[test]
fn the_same_tasks_score_the_same_through_burn_and_edge_runtime() {
    let data = common::root().join("configs/eval-data");
    let tasks: Vec<String> = ["ceval", "mmlu", "agieval", "cluewsc", "eprstmt"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let opts = RunOptions {
        progress: false,
        log_samples: true,
        ..RunOptions::default()
    };
    let mut burn = BurnModel::load(&tiny(), &common::device()).expect("load");
    let a = llm_eval::evaluate(&mut burn, &tasks, &data, &opts).expect("burn eval");
    let tmp = tempfile::tempdir().expect("tmp");
    let mut edge = EdgeModel::load(&export_f16(tmp.path()), 2048, 2).expect("gguf");
    let b = llm_eval::evaluate(&mut edge, &tasks, &data, &opts).expect("edge eval");
    for t in &tasks {
        let (ra, rb) = (&a.tasks[t], &b.tasks[t]);
        assert_eq!(ra.n, rb.n, "{t}");
        assert!(ra.n > 0, "{t}");
        assert_eq!(
            ra.metrics, rb.metrics,
            "{t}: burn {:?} vs edge {:?}",
            ra.metrics, rb.metrics
        );
        for (sa, sb) in ra.samples.iter().zip(&rb.samples) {
            assert_eq!(sa["pick"], sb["pick"], "{t} {}", sa["id"]);
            assert_eq!(sa["pick_norm"], sb["pick_norm"], "{t} {}", sa["id"]);
        }
    }
    assert_eq!(a.scores, b.scores);
    eprintln!("{}", llm_eval::markdown(&[a, b]));
}

#[test]
fn eval_cli_writes_what_sweep_collect_reads() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("eval.json");
    let stdout = common::run_ok(
        common::cloud_train().args([
            "eval",
            "--model",
            tiny().to_str().expect("utf8"),
            "--tasks",
            "eprstmt,cluewsc,cmrc,zh-fraction",
            "--data-dir",
            common::root()
                .join("configs/eval-data")
                .to_str()
                .expect("utf8"),
            "--limit",
            "2",
            "--out",
            out.to_str().expect("utf8"),
        ]),
    );
    assert!(stdout.contains("| eprstmt (acc) |"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("eval.json")).expect("json");
    let scores = v["scores"].as_object().expect("scores");
    assert_eq!(
        scores.len(),
        3,
        "zh-fraction is reported but not averaged: {v}"
    );
    assert!(v["zh_fraction"].as_f64().is_some(), "{v}");

    // eval-report: this result, a second one (the same with another name and eprstmt 75), and
    // reference numbers, laid out as Tables 3-5 (Markdown, CSV) and a chart.
    let mut second = v.clone();
    second["model"] = "second".into();
    second["tasks"]["eprstmt"]["metrics"]["acc"] = 75.0.into();
    let second_path = tmp.path().join("second.json");
    std::fs::write(&second_path, second.to_string()).expect("write");
    let reference = tmp.path().join("paper.csv");
    std::fs::write(
        &reference,
        "model,task,metric,value\npaper-8b,ceval,acc,51.2\npaper-8b,eprstmt,acc,88.0\npaper-8b,turing,human_rate,40.5\n",
    )
    .expect("write");
    let report = tmp.path().join("report");
    common::run_ok(common::cloud_train().args([
        "eval-report",
        out.to_str().expect("utf8"),
        second_path.to_str().expect("utf8"),
        "--reference",
        reference.to_str().expect("utf8"),
        "--out",
        report.to_str().expect("utf8"),
    ]));
    let t4 = std::fs::read_to_string(report.join("table4.md")).expect("table4.md");
    let cmrc = v["tasks"]["cmrc"]["metrics"]["em"]
        .as_f64()
        .expect("cmrc em");
    let cluewsc = v["tasks"]["cluewsc"]["metrics"]["acc"]
        .as_f64()
        .expect("cluewsc acc");
    let name = v["model"].as_str().expect("model");
    assert!(
        t4.contains("| paper-8b (reference) | - | 88.0 | - | - | - | - | - | - |")
            && t4.contains(&format!(
                "| second | {cluewsc:.1} | 75.0 | {cmrc:.1} | - | - | - | - | - |"
            ))
            && t4.contains(&format!("| {name} |")),
        "{t4}"
    );
    // Table 3 has only the reference row; Table 5 the Chinese share of both models.
    let t3 = std::fs::read_to_string(report.join("table3.csv")).expect("table3.csv");
    assert_eq!(
        t3,
        "model,reference,ceval:acc,mmlu:acc,agieval:acc,bbh:acc,gsm8k:acc,humaneval:pass@1,triviaqa:em,avg\n\
         paper-8b,true,51.2000,,,,,,,\n"
    );
    let t5 = std::fs::read_to_string(report.join("table5.csv")).expect("table5.csv");
    assert_eq!(t5.lines().count(), 4, "{t5}");
    assert!(std::fs::read_to_string(report.join("report.md"))
        .expect("report.md")
        .contains("**Table 5: emotional intelligence**"));
    // The chart: one 1100 x 360 panel per table with rows (all three here).
    let png = std::fs::read(report.join("report.png")).expect("report.png");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let (w, h) = (
        u32::from_be_bytes(png[16..20].try_into().expect("width")),
        u32::from_be_bytes(png[20..24].try_into().expect("height")),
    );
    assert_eq!((w, h), (1100, 3 * 360));

    // A bad task name is refused with the list of tasks.
    let o = common::cloud_train()
        .args([
            "eval",
            "--model",
            tiny().to_str().expect("utf8"),
            "--tasks",
            "mmmlu",
        ])
        .output()
        .expect("run");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("mmmlu") && err.contains("ceval"), "{err}");
}
