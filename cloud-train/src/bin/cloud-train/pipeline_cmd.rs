//! `cloud-train pipeline`: from the shipped GGUF and sample corpora to a quantized chatbot in
//! one run directory: base HF checkpoint, data, evaluation before, CPT, SFT, DPO, HF export,
//! GGUF quantization, evaluation after, and a summary table. Each finished stage is recorded in
//! `stages.json`; a re-run skips those and resumes the failed one (the training stages resume
//! from their own checkpoints).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use cloud_train::checkpoint::{self, SaveOptions};
use cloud_train::data::prepare::{prepare, PrepareOptions};
use cloud_train::device::Backend;
use cloud_train::pipeline::{PipelineConfig, StageConfig, STAGES};
use llm_eval::{EdgeModel, Report, RunOptions};
use serde_json::{json, Value};

use crate::cpt_cmd::RunArgs;

#[derive(Args)]
pub struct PipelineArgs {
    /// The pipeline's TOML config (configs/pipeline-demo.toml).
    #[arg(long)]
    config: PathBuf,
    /// Override a config value (`--set dir=runs/p2 --set 'cpt.set=["train.steps=2"]'`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

/// `stages.json`: what each finished stage reported, written after each stage.
struct Ledger {
    path: PathBuf,
    done: BTreeMap<String, Value>,
}

impl Ledger {
    fn open(dir: &Path) -> Result<Self> {
        let path = dir.join("stages.json");
        let done = match std::fs::read_to_string(&path) {
            Ok(t) => {
                serde_json::from_str(&t).with_context(|| format!("{}: not JSON", path.display()))?
            }
            Err(_) => BTreeMap::new(),
        };
        Ok(Self { path, done })
    }
    fn record(&mut self, stage: &str, info: Value) -> Result<()> {
        self.done.insert(stage.to_string(), info);
        let text = serde_json::to_string_pretty(&self.done)?;
        llama_spec::atomic::write_atomic(&self.path, text.as_bytes())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// First and last values of `key` in a run's metrics.jsonl.
fn first_last(run: &Path, key: &str) -> (Option<f64>, Option<f64>) {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap_or_default();
    let vals: Vec<f64> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get(key).and_then(Value::as_f64))
        .collect();
    (vals.first().copied(), vals.last().copied())
}

fn losses(run: &Path) -> Value {
    let (a, b) = first_last(run, "loss");
    let (va, vb) = first_last(run, "val_loss_combined");
    let (da, db) = first_last(run, "val_loss");
    json!({"loss_first": a, "loss_last": b, "val_first": va.or(da), "val_last": vb.or(db)})
}

fn evaluate(cfg: &PipelineConfig, gguf: &Path, out: &Path) -> Result<Value> {
    let mut m = EdgeModel::load(gguf, 2048, cfg.threads)?;
    let mut tasks = llm_eval::tasks::resolve(&cfg.eval_tasks)?;
    tasks.push("zh-fraction".into());
    let opts = RunOptions {
        limit: cfg.eval_limit,
        exec_threads: cfg.threads,
        ..RunOptions::default()
    };
    let r: Report = llm_eval::evaluate(&mut m, &tasks, &cfg.eval_data, &opts)?;
    r.write(out)?;
    Ok(json!({"average": r.average, "zh_fraction": r.zh_fraction, "scores": r.scores}))
}

/// Decode speed of the final GGUF: a 128-token greedy reply to a Chinese prompt.
fn decode_speed(gguf: &Path, threads: usize) -> Result<f64> {
    use edge_runtime::{
        GenerateOptions, LoadOptions, Message, Model, SamplerConfig, Session, SessionOptions,
    };
    let model = Arc::new(Model::load(gguf, LoadOptions::default())?);
    let mut s = Session::new(
        model,
        SessionOptions {
            n_ctx: 512,
            n_threads: threads,
            ..SessionOptions::default()
        },
    )?;
    let opts = GenerateOptions {
        max_tokens: 128,
        sampler: SamplerConfig {
            temperature: 0.0,
            ..SamplerConfig::default()
        },
        ..GenerateOptions::default()
    };
    let mut g = s.chat(&[Message::user("我今天有点难过，可以陪我聊聊吗？")], opts)?;
    for p in g.by_ref() {
        p?;
    }
    Ok(g.stats().tokens_per_second())
}

fn corpus_list(cfg: &PipelineConfig) -> String {
    let items: Vec<String> = cfg
        .corpus
        .iter()
        .map(|c| {
            format!(
                "{{name={:?}, path={:?}, role={:?}}}",
                c.name,
                cfg.dir.join("data").join(&c.name).display().to_string(),
                c.role
            )
        })
        .collect();
    format!("data.corpus=[{}]", items.join(", "))
}

fn stage_args(st: &StageConfig, extra: Vec<String>) -> RunArgs {
    let mut overrides = st.set.clone();
    overrides.extend(extra);
    RunArgs {
        config: st.config.clone(),
        overrides,
        resume: None,
        fresh: false,
    }
}

fn quoted(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

fn run_stage(cfg: &PipelineConfig, stage: &str) -> Result<Value> {
    let d = &cfg.dir;
    let gguf = d.join(format!("final.{}.gguf", cfg.quant.to_ascii_uppercase()));
    Ok(match stage {
        "base" => {
            let c = quantize::to_hf::to_hf(
                &cfg.base_gguf,
                &d.join("base"),
                llama_spec::hf::safetensors::Dtype::F32,
                true,
            )?;
            json!({"from": cfg.base_gguf, "layers": c.num_hidden_layers, "hidden": c.hidden_size})
        }
        "data" => {
            let mut tokens = BTreeMap::new();
            for c in &cfg.corpus {
                let mut o = PrepareOptions::new(
                    vec![c.path.clone()],
                    d.join("data").join(&c.name),
                    d.join("base/tokenizer.json"),
                );
                o.val_fraction = cfg.val_fraction;
                let p = prepare(&o, |_, _| {})?;
                tokens.insert(c.name.clone(), p.manifest.tokens());
            }
            json!({"tokens": tokens})
        }
        "eval-before" => evaluate(cfg, &cfg.base_gguf, &d.join("eval-before.json"))?,
        "cpt" => {
            let extra = vec![
                format!("model.path={}", quoted(&d.join("base"))),
                corpus_list(cfg),
                format!("output.dir={}", quoted(&d.join("cpt"))),
            ];
            crate::cpt_cmd::run(stage_args(&cfg.cpt, extra))?;
            losses(&d.join("cpt"))
        }
        "sft" | "dpo" => {
            let (st, from, kind) = if stage == "sft" {
                (&cfg.sft, "cpt", cloud_train::align::Stage::Sft)
            } else {
                (&cfg.dpo, "sft", cloud_train::align::Stage::Dpo)
            };
            let extra = vec![
                format!("model.path={}", quoted(&d.join(from).join("latest"))),
                format!("output.dir={}", quoted(&d.join(stage))),
            ];
            crate::align_cmd::run(stage_args(st, extra), kind)?;
            losses(&d.join(stage))
        }
        "export" => {
            // The final HF checkpoint on its own (no optimizer state), F32 so that
            // quantization starts from the trained weights exactly.
            let src = d.join("dpo/latest");
            let device = Backend::Flex.device().map_err(anyhow::Error::msg)?;
            let (llama, config) = checkpoint::load(&src, &device)
                .with_context(|| format!("loading {}", src.display()))?;
            let opts = SaveOptions {
                tokenizer_from: Some(src.clone()),
                ..SaveOptions::default()
            };
            checkpoint::save(&llama, &config, d.join("final-hf"), &opts)?;
            json!({"hf": d.join("final-hf")})
        }
        "quantize" => {
            let ftype = quantize::policy::FileType::parse(&cfg.quant)
                .with_context(|| format!("quant {:?}: not a GGUF file type", cfg.quant))?;
            let opts = quantize::convert::ConvertOptions {
                ftype,
                overrides: Vec::new(),
                name: None,
                progress: true,
            };
            quantize::convert::convert(&d.join("final-hf"), &gguf, &opts)?;
            let bytes = std::fs::metadata(&gguf).map(|m| m.len()).unwrap_or(0);
            json!({"gguf": gguf, "bytes": bytes})
        }
        "eval-after" => {
            let mut v = evaluate(cfg, &gguf, &d.join("eval-after.json"))?;
            v["decode_tokens_per_s"] = json!(decode_speed(&gguf, cfg.threads)?);
            v
        }
        other => bail!("unknown stage {other}"),
    })
}

fn f(v: &Value, k: &str, digits: usize) -> String {
    v.get(k)
        .and_then(Value::as_f64)
        .map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

fn summary(ledger: &Ledger) -> String {
    let mut s = String::from(
        "| stage | time | before | after | notes |\n| --- | ---: | ---: | ---: | --- |\n",
    );
    for stage in STAGES {
        let v = ledger.done.get(stage).cloned().unwrap_or(Value::Null);
        let t = format!(
            "{:.0} s",
            v.get("seconds").and_then(Value::as_f64).unwrap_or(0.0)
        );
        let (before, after, notes) = match stage {
            "cpt" | "sft" | "dpo" => (
                format!("loss {}", f(&v, "loss_first", 3)),
                format!("loss {}", f(&v, "loss_last", 3)),
                format!(
                    "val loss {} -> {}",
                    f(&v, "val_first", 3),
                    f(&v, "val_last", 3)
                ),
            ),
            "eval-before" | "eval-after" => {
                let zh = format!("zh tokens {} %", f(&v, "zh_fraction", 1));
                let avg = format!("avg {}", f(&v, "average", 1));
                let extra = v
                    .get("decode_tokens_per_s")
                    .and_then(Value::as_f64)
                    .map_or(String::new(), |t| format!(", decode {t:.1} t/s"));
                if stage == "eval-before" {
                    (format!("{avg}, {zh}"), String::new(), String::new())
                } else {
                    (
                        String::new(),
                        format!("{avg}, {zh}"),
                        extra.trim_start_matches(", ").to_string(),
                    )
                }
            }
            "quantize" => (
                String::new(),
                String::new(),
                format!(
                    "{:.1} MB",
                    v.get("bytes").and_then(Value::as_f64).unwrap_or(0.0) / 1e6
                ),
            ),
            "data" => (
                String::new(),
                String::new(),
                format!(
                    "tokens {}",
                    v.get("tokens").map_or(String::new(), Value::to_string)
                ),
            ),
            _ => (String::new(), String::new(), String::new()),
        };
        s.push_str(&format!(
            "| {stage} | {t} | {before} | {after} | {notes} |\n"
        ));
    }
    s
}

pub fn run(a: PipelineArgs) -> Result<()> {
    let cfg = PipelineConfig::from_file(&a.config, &a.overrides)?;
    if !cfg.base_gguf.is_file() {
        bail!(
            "{}: base_gguf {} not found (run scripts/fetch-assets.sh)",
            a.config.display(),
            cfg.base_gguf.display()
        );
    }
    std::fs::create_dir_all(&cfg.dir).with_context(|| format!("creating {}", cfg.dir.display()))?;
    let mut ledger = Ledger::open(&cfg.dir)?;
    let start = Instant::now();
    for (i, stage) in STAGES.iter().enumerate() {
        if ledger.done.contains_key(*stage) {
            println!("pipeline {}/{} {stage}: done already", i + 1, STAGES.len());
            continue;
        }
        println!("pipeline {}/{} {stage} ...", i + 1, STAGES.len());
        let t0 = Instant::now();
        let mut info = run_stage(&cfg, stage).with_context(|| {
            format!("pipeline stage {stage:?} failed (fix it and run the same command again: finished stages are skipped)")
        })?;
        info["seconds"] = json!(t0.elapsed().as_secs_f64());
        ledger.record(stage, info)?;
        println!(
            "pipeline {}/{} {stage}: done in {:.0} s",
            i + 1,
            STAGES.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    let table = summary(&ledger);
    let total: f64 = ledger
        .done
        .values()
        .filter_map(|v| v.get("seconds").and_then(Value::as_f64))
        .sum();
    let md = format!(
        "{table}\ntotal {:.1} min (this run {:.1} min)\n",
        total / 60.0,
        start.elapsed().as_secs_f64() / 60.0
    );
    llama_spec::atomic::write_atomic(cfg.dir.join("summary.md"), md.as_bytes())?;
    println!("\n{md}");
    let gguf = cfg
        .dir
        .join(format!("final.{}.gguf", cfg.quant.to_ascii_uppercase()));
    println!("chat with it:\n  cargo run --release -p tui --bin edge-chat -- --model {} --persona xiaonuan", gguf.display());
    Ok(())
}
