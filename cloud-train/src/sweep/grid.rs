//! `sweep`: one CPT run per (ALMR, LR) grid point, derived from a base config with only
//! `data.almr`, `train.lr` and `output.dir` changed; run here one after another (finished runs
//! skipped, an interrupted one resumed), or written out as a Slurm job array; and `collect`,
//! which gathers every run's final validation losses (and evaluation scores, when present)
//! into `results.csv`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::SweepError;
use crate::cpt::config::CptConfig;
use crate::train::config::{ConfigError, RunConfig};
use crate::train::state;

/// The sweep's index of its runs.
pub const SWEEP: &str = "sweep.json";
/// Per-run evaluation results (`{"scores": {"benchmark": score, ...}}`), written by the
/// evaluation harness; optional.
pub const EVAL: &str = "eval.json";

/// One grid point.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GridRun {
    pub name: String,
    /// Percent.
    pub almr_pct: f64,
    pub lr: f64,
    /// The run's output directory.
    pub dir: PathBuf,
}

/// The grid's runs and their configs. `almrs_pct` in percent.
pub fn plan(
    base: &Path,
    overrides: &[String],
    almrs_pct: &[f64],
    lrs: &[f64],
    out: &Path,
) -> Result<Vec<(GridRun, CptConfig)>, SweepError> {
    if almrs_pct.is_empty() || lrs.is_empty() {
        return Err(SweepError::Grid(
            "an empty grid: give --almr and --lr values".into(),
        ));
    }
    let mut runs = Vec::new();
    for &a in almrs_pct {
        if !(0.0..=100.0).contains(&a) {
            return Err(SweepError::Grid(format!(
                "ALMR {a}: give percentages in [0, 100]"
            )));
        }
        for &lr in lrs {
            let name = format!("almr{a}_lr{lr:e}").replace('+', "");
            let dir = out.join(&name);
            let mut o = overrides.to_vec();
            o.push(format!("data.almr={}", a / 100.0));
            o.push(format!("train.lr={lr:e}"));
            o.push(format!("output.dir={:?}", dir.display().to_string()));
            let cfg: CptConfig = CptConfig::load(base, &o).map_err(|e| match e {
                ConfigError::Invalid { path, invalid } => ConfigError::invalid(
                    &path,
                    crate::train::config::Invalid(format!("at ALMR {a} %, LR {lr:e}: {invalid}")),
                ),
                e => e,
            })?;
            runs.push((
                GridRun {
                    name,
                    almr_pct: a,
                    lr,
                    dir,
                },
                cfg,
            ));
        }
    }
    Ok(runs)
}

/// Write `out/sweep.json`.
pub fn write_index(out: &Path, runs: &[(GridRun, CptConfig)]) -> Result<(), SweepError> {
    std::fs::create_dir_all(out).map_err(SweepError::io(out))?;
    let list: Vec<&GridRun> = runs.iter().map(|(r, _)| r).collect();
    let p = out.join(SWEEP);
    let json = serde_json::to_string_pretty(&list).unwrap_or_default();
    llama_spec::atomic::write_atomic(&p, json.as_bytes()).map_err(SweepError::io(&p))
}

/// The run has a checkpoint at its last step.
pub fn finished(cfg: &CptConfig) -> bool {
    state::checkpoints(&cfg.output.dir)
        .last()
        .is_some_and(|(step, _)| *step >= cfg.total_steps())
}

/// What to evaluate each finished run on (its `eval.json`: the metric objective).
#[derive(Debug, Clone)]
pub struct EvalPlan {
    pub tasks: Vec<String>,
    pub data_dir: PathBuf,
    pub limit: Option<usize>,
}

impl EvalPlan {
    /// The `cloud-train eval` arguments that carry this plan (for the Slurm script).
    fn cli_args(&self) -> String {
        let mut s = format!(
            "--tasks {} --data-dir {:?}",
            self.tasks.join(","),
            self.data_dir.display().to_string()
        );
        if let Some(n) = self.limit {
            let _ = write!(s, " --limit {n}");
        }
        s
    }
}

/// Evaluate a finished run's last checkpoint and write `run/eval.json`, unless an `eval.json`
/// of that checkpoint with those tasks is there already. Returns the average when evaluated.
pub fn evaluate_run(
    cfg: &CptConfig,
    plan: &EvalPlan,
    progress: bool,
) -> Result<Option<llm_eval::Report>, SweepError> {
    let Some((_, ckpt)) = state::checkpoints(&cfg.output.dir).last().cloned() else {
        return Err(SweepError::Run {
            path: cfg.output.dir.clone(),
            message: "no checkpoint to evaluate".into(),
        });
    };
    let out = cfg.output.dir.join(EVAL);
    let name = ckpt
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Ok(prev) = llm_eval::Report::read(&out) {
        let covered = plan.tasks.iter().all(|t| prev.tasks.contains_key(t));
        if prev.model == name && covered && prev.limit == plan.limit {
            return Ok(None);
        }
    }
    let device = cfg.train.backend.device()?;
    let mut model = crate::eval::BurnModel::load(&ckpt, &device)?;
    let opts = llm_eval::RunOptions {
        limit: plan.limit,
        progress,
        ..llm_eval::RunOptions::default()
    };
    let tasks = llm_eval::tasks::resolve(&plan.tasks)?;
    let report = llm_eval::evaluate(&mut model, &tasks, &plan.data_dir, &opts)?;
    report.write(&out)?;
    Ok(Some(report))
}

/// A Slurm job array: one config per run under `out/configs/`, and `out/sweep.sbatch`; each
/// task trains, then (with an eval plan) evaluates its run.
pub fn emit_slurm(
    out: &Path,
    runs: &[(GridRun, CptConfig)],
    eval: Option<&EvalPlan>,
) -> Result<PathBuf, SweepError> {
    let dir = out.join("configs");
    std::fs::create_dir_all(&dir).map_err(SweepError::io(&dir))?;
    let mut list = String::new();
    let mut dirs = String::new();
    for (r, cfg) in runs {
        let p = dir.join(format!("{}.toml", r.name));
        let text = toml::to_string(cfg).map_err(|e| SweepError::Run {
            path: p.clone(),
            message: format!("serializing: {e}"),
        })?;
        llama_spec::atomic::write_atomic(&p, text.as_bytes()).map_err(SweepError::io(&p))?;
        let _ = writeln!(list, "  {:?}", p.display().to_string());
        let _ = writeln!(dirs, "  {:?}", cfg.output.dir.display().to_string());
    }
    let eval_line = eval.map_or(String::new(), |e| {
        format!(
            "cloud-train eval --model \"${{RUNS[$SLURM_ARRAY_TASK_ID]}}/latest\" {} --out \"${{RUNS[$SLURM_ARRAY_TASK_ID]}}/{EVAL}\"\n",
            e.cli_args()
        )
    });
    let script = format!(
        r#"#!/bin/bash
# The (ALMR, LR) sweep as a Slurm job array: one CPT run per task, each resumable (a requeued
# task continues from its newest checkpoint). Adjust the resources for your cluster, then:
#   sbatch {sbatch}
# and when every task is done: cloud-train sweep collect {out}
#SBATCH --job-name=almr-lr-sweep
#SBATCH --array=0-{last}
#SBATCH --nodes=1
#SBATCH --gpus-per-node=8
#SBATCH --time=48:00:00
#SBATCH --requeue
#SBATCH --output={out}/slurm-%A_%a.out
set -euo pipefail
CONFIGS=(
{list})
RUNS=(
{dirs})
cloud-train cpt --config "${{CONFIGS[$SLURM_ARRAY_TASK_ID]}}"
{eval_line}"#,
        sbatch = out.join("sweep.sbatch").display(),
        out = out.display(),
        last = runs.len().saturating_sub(1),
    );
    let p = out.join("sweep.sbatch");
    llama_spec::atomic::write_atomic(&p, script.as_bytes()).map_err(SweepError::io(&p))?;
    Ok(p)
}

/// One row of `results.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    pub run: String,
    pub almr_pct: f64,
    pub lr: f64,
    pub steps: u64,
    pub tokens: u64,
    pub train_loss: f64,
    /// The mean of the per-corpus validation losses: the same objective at every grid point
    /// (the run's own mixture-weighted loss would weigh the corpora differently per ALMR).
    pub val_loss: f64,
    /// The run's mixture-weighted validation loss, as logged.
    pub val_loss_mixture: f64,
    /// Per corpus, in name order.
    pub val_loss_corpus: Vec<(String, f64)>,
    /// Per benchmark (from `eval.json`), in name order; and their mean.
    pub scores: Vec<(String, f64)>,
    pub metric_avg: Option<f64>,
}

/// Every run of the sweep in `dir` with a final validation loss (runs without one are listed
/// in the second value, so the user sees what is missing).
pub fn collect(dir: &Path) -> Result<(Vec<ResultRow>, Vec<String>), SweepError> {
    let idx = dir.join(SWEEP);
    let text = std::fs::read_to_string(&idx).map_err(|e| SweepError::Run {
        path: idx.clone(),
        message: format!("{e} (run `cloud-train sweep` first)"),
    })?;
    let runs: Vec<GridRun> = serde_json::from_str(&text).map_err(|e| SweepError::Run {
        path: idx.clone(),
        message: format!("not a sweep index: {e}"),
    })?;
    let (mut rows, mut missing) = (Vec::new(), Vec::new());
    for r in runs {
        let metrics = std::fs::read_to_string(r.dir.join(state::METRICS)).unwrap_or_default();
        let last_eval = metrics
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["val_loss_combined"].is_number());
        let Some(v) = last_eval else {
            missing.push(r.name);
            continue;
        };
        let mut val_loss_corpus: Vec<(String, f64)> = v["val_loss"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, x)| x.as_f64().map(|x| (k.clone(), x)))
                    .collect()
            })
            .unwrap_or_default();
        val_loss_corpus.sort_by(|a, b| a.0.cmp(&b.0));
        let mut scores: Vec<(String, f64)> = std::fs::read_to_string(r.dir.join(EVAL))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|e| {
                e["scores"].as_object().map(|m| {
                    m.iter()
                        .filter_map(|(k, x)| x.as_f64().map(|x| (k.clone(), x)))
                        .collect()
                })
            })
            .unwrap_or_default();
        scores.sort_by(|a, b| a.0.cmp(&b.0));
        let metric_avg = (!scores.is_empty())
            .then(|| scores.iter().map(|s| s.1).sum::<f64>() / scores.len() as f64);
        rows.push(ResultRow {
            run: r.name,
            almr_pct: r.almr_pct,
            lr: r.lr,
            steps: v["step"].as_u64().unwrap_or(0),
            tokens: v["tokens"].as_u64().unwrap_or(0),
            train_loss: v["loss"].as_f64().unwrap_or(f64::NAN),
            val_loss: if val_loss_corpus.is_empty() {
                f64::NAN
            } else {
                val_loss_corpus.iter().map(|c| c.1).sum::<f64>() / val_loss_corpus.len() as f64
            },
            val_loss_mixture: v["val_loss_combined"].as_f64().unwrap_or(f64::NAN),
            val_loss_corpus,
            scores,
            metric_avg,
        });
    }
    Ok((rows, missing))
}

/// `results.csv`: `run, almr_pct, lr, log10_lr, steps, tokens, train_loss, val_loss` (the mean
/// of the per-corpus validation losses), `val_loss_mixture` (weighted by the run's mixture),
/// `val_loss_<corpus>` for each corpus, `score_<benchmark>` for each evaluated benchmark, and
/// `metric_avg` (their mean; empty without evaluations).
pub fn to_csv(rows: &[ResultRow]) -> String {
    let corpora: Vec<String> = rows
        .first()
        .map(|r| r.val_loss_corpus.iter().map(|c| c.0.clone()).collect())
        .unwrap_or_default();
    let mut benches: Vec<String> = rows
        .iter()
        .flat_map(|r| r.scores.iter().map(|s| s.0.clone()))
        .collect();
    benches.sort();
    benches.dedup();
    let mut out =
        String::from("run,almr_pct,lr,log10_lr,steps,tokens,train_loss,val_loss,val_loss_mixture");
    for c in &corpora {
        let _ = write!(out, ",val_loss_{c}");
    }
    for b in &benches {
        let _ = write!(out, ",score_{b}");
    }
    out.push_str(",metric_avg\n");
    for r in rows {
        let _ = write!(
            out,
            "{},{},{:e},{:.6},{},{},{:.6},{:.6},{:.6}",
            r.run,
            r.almr_pct,
            r.lr,
            r.lr.log10(),
            r.steps,
            r.tokens,
            r.train_loss,
            r.val_loss,
            r.val_loss_mixture
        );
        for c in &corpora {
            let v = r.val_loss_corpus.iter().find(|x| &x.0 == c).map(|x| x.1);
            let _ = write!(out, ",{}", v.map_or(String::new(), |v| format!("{v:.6}")));
        }
        for b in &benches {
            let v = r.scores.iter().find(|x| &x.0 == b).map(|x| x.1);
            let _ = write!(out, ",{}", v.map_or(String::new(), |v| format!("{v:.6}")));
        }
        let _ = writeln!(
            out,
            ",{}",
            r.metric_avg.map_or(String::new(), |v| format!("{v:.6}"))
        );
    }
    out
}

/// What the frontier needs of one row of `results.csv`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridResult {
    pub almr_pct: f64,
    pub log10_lr: f64,
    pub val_loss: f64,
    pub metric_avg: Option<f64>,
}

/// Every row of a `results.csv`.
pub fn read_csv(path: &Path) -> Result<Vec<GridResult>, SweepError> {
    let text = std::fs::read_to_string(path).map_err(SweepError::io(path))?;
    let bad = |message: String| SweepError::Run {
        path: path.to_path_buf(),
        message,
    };
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| bad("empty".into()))?
        .split(',')
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| bad(format!("no column {name:?}")))
    };
    let (ca, cx, cl, cm) = (
        col("almr_pct")?,
        col("log10_lr")?,
        col("val_loss")?,
        col("metric_avg")?,
    );
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split(',').collect();
        let num = |c: usize| -> Result<f64, SweepError> {
            f.get(c).and_then(|v| v.trim().parse().ok()).ok_or_else(|| {
                bad(format!(
                    "line {}: column {} is not a number",
                    i + 2,
                    header[c]
                ))
            })
        };
        let metric = f.get(cm).and_then(|v| v.trim().parse().ok());
        rows.push(GridResult {
            almr_pct: num(ca)?,
            log10_lr: num(cx)?,
            val_loss: num(cl)?,
            metric_avg: metric,
        });
    }
    Ok(rows)
}
