//! End to end: `data prepare` + `cpt` on configs/cpt-tiny.toml (shortened with `--set`), the
//! checkpoint converted by `quantize`, and a run killed with SIGKILL then resumed, whose loss
//! sequence must equal the uninterrupted run's exactly.

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{cloud_train as bin, prepare_corpora, run_ok};

/// `cpt --config configs/cpt-tiny.toml` with the data and output moved and a shorter run.
fn cpt(data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = bin();
    c.args(["cpt", "--config", "configs/cpt-tiny.toml"]);
    let mut sets = vec![
        format!("data.corpus=[{{name=\"en\", path={:?}, role=\"base\"}}, {{name=\"zh\", path={:?}, role=\"additional\"}}]",
            data.join("en"), data.join("zh")),
        format!("output.dir={:?}", out),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    for s in sets {
        c.arg("--set").arg(s);
    }
    c
}

fn metrics(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[test]
fn tiny_cpt_end_to_end() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    prepare_corpora(&data);
    let out = tmp.path().join("run");
    let text = run_ok(&mut cpt(
        &data,
        &out,
        &[
            "train.steps=12",
            "output.save_every=6",
            "output.eval_every=6",
        ],
    ));
    assert!(text.contains("cpt: 12 steps"), "{text}");

    let m = metrics(&out);
    assert_eq!(m.len(), 12);
    let loss: Vec<f64> = m
        .iter()
        .map(|l| l["loss"].as_f64().expect("loss"))
        .collect();
    println!("losses {loss:?}");
    let tail = loss[9..].iter().sum::<f64>() / 3.0;
    assert!(tail < loss[0] - 1.0, "loss did not decrease: {loss:?}");
    // Realized ALMR within one sequence of the target after every step (16 sequences/step).
    for l in &m {
        let n = l["step"].as_f64().expect("step") * 16.0;
        let zh = l["almr"].as_f64().expect("almr") * n;
        assert!(
            (zh - 0.33 * n).abs() < 1.0,
            "step {}: {zh} of {n} sequences",
            l["step"]
        );
    }
    let last = &m[11];
    for key in ["lr", "grad_norm", "tokens_per_s", "val_loss_combined"] {
        assert!(
            last[key].as_f64().is_some_and(f64::is_finite),
            "{key}: {last}"
        );
    }
    assert!(
        last["val_loss"]["en"].is_number() && last["val_loss"]["zh"].is_number(),
        "{last}"
    );
    assert_eq!(last["tokens"].as_u64(), Some(12 * 16 * 64));

    // keep_last = 2: both checkpoints, each complete.
    for step in [6, 12] {
        let ck = out.join(format!("checkpoint-{step:06}"));
        for f in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "optimizer.safetensors",
            "trainer_state.json",
        ] {
            assert!(ck.join(f).is_file(), "{}", ck.join(f).display());
        }
    }
    // The checkpoint is an HF checkpoint that quantize converts.
    let gguf = tmp.path().join("tiny.gguf");
    let opts = quantize::convert::ConvertOptions {
        ftype: quantize::policy::FileType::Q8_0,
        overrides: Vec::new(),
        name: None,
        progress: false,
    };
    quantize::convert::convert(&out.join("checkpoint-000012"), &gguf, &opts)
        .expect("quantize convert");
    assert!(std::fs::metadata(&gguf).expect("gguf").len() > 1 << 20);

    // Running it again resumes at the end: nothing left to do, metrics unchanged.
    let text = run_ok(&mut cpt(
        &data,
        &out,
        &["train.steps=12", "output.save_every=6"],
    ));
    assert!(text.contains("(0 this run)"), "{text}");
    assert_eq!(metrics(&out).len(), 12);
}

#[test]
fn killed_run_resumes_exactly() {
    killed_run_resumes_exactly_with(&[]);
}

/// The compensations of compensated updates are saved and restored with the moments (their
/// save and load are in the CI tier: `distributed.rs`, one rank).
#[test]
#[ignore = "full tier (scripts/test.sh --full): two more 6-step runs, ~40 s"]
fn killed_run_with_compensated_updates_resumes_exactly() {
    killed_run_resumes_exactly_with(&["train.compensated_update=true"]);
}

fn killed_run_resumes_exactly_with(extra: &[&str]) {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    prepare_corpora(&data);
    let mut args = vec![
        "train.steps=6",
        "output.save_every=2",
        "output.eval_every=3",
        "output.keep_last=5",
    ];
    args.extend_from_slice(extra);

    let straight = tmp.path().join("straight");
    run_ok(&mut cpt(&data, &straight, &args));
    let opt = std::fs::read(straight.join("checkpoint-000006/optimizer.safetensors"))
        .expect("optimizer state");
    let has_compensation = opt.windows(13).any(|w| w == b".compensation");
    assert_eq!(has_compensation, !extra.is_empty(), "compensations saved");

    let killed = tmp.path().join("killed");
    let mut child = cpt(&data, &killed, &args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    // Kill once step 3 is logged (after the checkpoint at step 2), before the end.
    let start = Instant::now();
    loop {
        let steps =
            std::fs::read_to_string(killed.join("metrics.jsonl")).map_or(0, |t| t.lines().count());
        if steps >= 3 {
            break;
        }
        assert!(
            child.try_wait().expect("wait").is_none(),
            "run ended before it could be killed"
        );
        assert!(start.elapsed() < Duration::from_secs(300), "run too slow");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert!(
        !killed.join("checkpoint-000006").exists(),
        "killed too late to test anything"
    );
    let logged = metrics(&killed).len();
    println!("killed after {logged} logged steps");

    let text = run_ok(&mut cpt(&data, &killed, &args));
    assert!(text.contains("resuming from"), "{text}");

    let (a, b) = (metrics(&straight), metrics(&killed));
    assert_eq!(a.len(), 6);
    assert_eq!(b.len(), 6, "steps after the checkpoint are logged once");
    for (x, y) in a.iter().zip(&b) {
        for key in ["step", "loss", "grad_norm", "lr", "almr", "val_loss"] {
            assert_eq!(x[key], y[key], "step {}: {key}", x["step"]);
        }
    }
}

#[test]
fn exhausted_corpus_with_stop_ends_the_run_with_a_checkpoint() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    prepare_corpora(&data);
    let out = tmp.path().join("run");
    let mut c = bin();
    c.args(["cpt", "--config", "configs/cpt-tiny.toml"]);
    // zh has 19 training windows of 64 tokens; at 16 sequences a step and ALMR 0.33 it runs
    // out during step 4.
    c.arg("--set").arg(format!(
        "data.corpus=[{{name=\"en\", path={:?}, role=\"base\"}}, {{name=\"zh\", path={:?}, role=\"additional\", on_exhausted=\"stop\"}}]",
        data.join("en"),
        data.join("zh")
    ));
    c.arg("--set").arg(format!("output.dir={out:?}"));
    c.args(["--set", "train.steps=10"]);
    let text = run_ok(&mut c);
    assert!(
        text.contains("stopped early: corpus \"zh\" is exhausted after 19 windows"),
        "{text}"
    );
    assert!(text.contains("cpt: 3 steps"), "{text}");
    assert!(out.join("checkpoint-000003/trainer_state.json").is_file());
    let st: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("checkpoint-000003/trainer_state.json")).expect("state"),
    )
    .expect("json");
    assert_eq!(
        st["mixer_counts"][1].as_u64(),
        Some(16),
        "zh draws of the 3 finished steps"
    );
    assert_eq!(metrics(&out).len(), 3);
}
