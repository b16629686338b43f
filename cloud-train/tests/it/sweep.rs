//! `sweep` end to end on the tiny config (3 x 3 grid, 2 steps a run), `sweep collect`,
//! a resumed sweep that skips finished runs, `--emit-slurm`, and `frontier` on the result.
//! The averaged metric comes from the evaluation harness: first synthetic `eval.json` scores
//! peaking on a known line (the frontier must find it), then the real harness on each run.

use crate::common;

use cloud_train::train::RunConfig;
use std::path::{Path, PathBuf};

use common::{cloud_train, run_ok};

fn run(args: &[String]) -> String {
    run_ok(cloud_train().args(args))
}

fn s(v: &str) -> String {
    v.to_string()
}

fn prepare(dir: &Path) {
    for lang in ["en", "zh"] {
        run(&[
            s("data"),
            s("prepare"),
            s("--in"),
            format!("configs/corpora/{lang}"),
            s("--out"),
            dir.join(lang).display().to_string(),
            s("--tokenizer"),
            s("assets/llama3-tokenizer.json"),
            s("--val-fraction"),
            s("0.25"),
        ]);
    }
}

#[test]
fn sweep_collect_and_frontier() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    prepare(&data);
    let out = tmp.path().join("sweep");
    let mut args = vec![
        s("sweep"),
        s("--config"),
        s("configs/cpt-tiny.toml"),
        s("--almr"),
        s("10,33,60"),
        s("--lr"),
        s("1e-3,3e-3,1e-2"),
        s("--out"),
        out.display().to_string(),
    ];
    for set in [
        format!("data.corpus=[{{name=\"en\", path={:?}, role=\"base\"}}, {{name=\"zh\", path={:?}, role=\"additional\"}}]",
            data.join("en").display().to_string(), data.join("zh").display().to_string()),
        s("train.steps=2"), s("train.warmup_steps=0"), s("train.mbs=4"), s("train.gbs=4"), s("output.save_every=2"),
    ] {
        args.push(s("--set"));
        args.push(set);
    }
    let text = run(&args);
    assert!(text.contains("collect: 9 runs"), "{text}");
    let csv = std::fs::read_to_string(out.join("results.csv")).expect("results.csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 10, "{csv}");
    assert_eq!(lines[0], "run,almr_pct,lr,log10_lr,steps,tokens,train_loss,val_loss,val_loss_mixture,val_loss_en,val_loss_zh,metric_avg");
    assert!(
        lines[1].starts_with("almr10_lr1e-3,10,1e-3,-3.000000,2,512,"),
        "{}",
        lines[1]
    );

    // Again: every run is finished, nothing is trained.
    let text = run(&args);
    assert_eq!(text.matches("done already").count(), 9, "{text}");

    // The loss frontier alone (no metric yet).
    let report = tmp.path().join("report");
    let frontier = || {
        run(&[
            s("frontier"),
            s("--results"),
            out.join("results.csv").display().to_string(),
            s("--out"),
            report.display().to_string(),
        ])
    };
    let text = frontier();
    assert!(
        text.contains("loss frontier:") && text.contains("recommendation: none"),
        "{text}"
    );
    assert!(report.join("contours.png").is_file() && report.join("contours.svg").is_file());

    // Synthetic scores standing in for the harness: the metric peaks on ALMR = 10 log10(LR) + 60.
    let index: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).expect("index"))
            .expect("json");
    for r in &index {
        let (a, x) = (
            r["almr_pct"].as_f64().expect("almr"),
            r["lr"].as_f64().expect("lr").log10(),
        );
        let score = 50.0 - ((a - (10.0 * x + 60.0)) / 20.0).powi(2) + x;
        let dir = PathBuf::from(r["dir"].as_str().expect("dir"));
        std::fs::write(
            dir.join("eval.json"),
            format!(
                "{{\"scores\": {{\"ceval\": {score}, \"mmlu\": {}}}}}",
                score + 1.0
            ),
        )
        .expect("eval.json");
    }
    run(&[s("sweep"), s("collect"), out.display().to_string()]);
    let csv = std::fs::read_to_string(out.join("results.csv")).expect("results.csv");
    assert!(
        csv.lines()
            .next()
            .expect("header")
            .ends_with("score_ceval,score_mmlu,metric_avg"),
        "{csv}"
    );
    let text = frontier();
    println!("{text}");
    let f: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("frontier.json")).expect("json"))
            .expect("json");
    let line = &f["metric"]["frontier"]["line"];
    assert!(
        (line["slope"].as_f64().expect("slope") - 10.0).abs() < 1.0,
        "{f}"
    );
    assert!(
        (line["intercept"].as_f64().expect("b") - 60.0).abs() < 3.0,
        "{f}"
    );
    assert!(f["recommendation"]["almr_pct"].is_number(), "{f}");

    // The real harness: each finished run's last checkpoint evaluated (burn backend), once.
    let mut with_eval = args.clone();
    for a in ["--eval-tasks", "eprstmt,cluewsc", "--eval-limit", "2"] {
        with_eval.push(s(a));
    }
    let text = run(&with_eval);
    assert_eq!(text.matches("eval average").count(), 9, "{text}");
    let csv = std::fs::read_to_string(out.join("results.csv")).expect("results.csv");
    assert!(
        csv.lines()
            .next()
            .expect("header")
            .ends_with("score_cluewsc,score_eprstmt,metric_avg"),
        "{csv}"
    );
    let e: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("almr33_lr3e-3/eval.json")).expect("eval.json"),
    )
    .expect("json");
    assert_eq!(e["model"], "checkpoint-000002", "{e}");
    assert_eq!(e["tasks"]["eprstmt"]["n"], 2, "{e}");
    let text = run(&with_eval);
    assert_eq!(text.matches("evaluated already").count(), 9, "{text}");

    // Slurm: one config per run and a job array.
    let slurm = tmp.path().join("slurm");
    let mut args2 = with_eval.clone();
    let i = args2.iter().position(|a| a == "--out").expect("--out") + 1;
    args2[i] = slurm.display().to_string();
    args2.push(s("--emit-slurm"));
    run(&args2);
    let sbatch = std::fs::read_to_string(slurm.join("sweep.sbatch")).expect("sbatch");
    assert!(sbatch.contains("#SBATCH --array=0-8"), "{sbatch}");
    assert!(
        sbatch.contains("cloud-train eval --model \"${RUNS[$SLURM_ARRAY_TASK_ID]}/latest\" --tasks eprstmt,cluewsc"),
        "{sbatch}"
    );
    let cfgs = std::fs::read_dir(slurm.join("configs"))
        .expect("configs")
        .count();
    assert_eq!(cfgs, 9);
    let one = std::fs::read_to_string(slurm.join("configs/almr33_lr3e-3.toml")).expect("config");
    let cfg = cloud_train::cpt::CptConfig::from_file(slurm.join("configs/almr33_lr3e-3.toml"))
        .expect("valid");
    assert!(
        (cfg.data.almr - 0.33).abs() < 1e-12 && (cfg.train.lr - 3e-3).abs() < 1e-15,
        "{one}"
    );
}
