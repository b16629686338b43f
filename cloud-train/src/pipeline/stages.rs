//! The pipeline's stages, in order: each a name and a function over the config that calls the
//! library and returns what it measured (recorded in `stages.json`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use super::{PipelineConfig, PipelineError, StageConfig};
use crate::align::{self, AlignConfig};
use crate::checkpoint::{self, SaveOptions};
use crate::cpt::{self, CptConfig};
use crate::data::convert::{mix, MixInput};
use crate::data::prepare::{prepare, PrepareOptions};
use crate::device::Backend;
use crate::train::config::RunConfig;
use crate::train::{Event, Resume};
use llm_eval::LanguageModel;

/// What a stage does: from the pipeline's config to the values it reports; training stages
/// pass their events on.
pub type StageFn = fn(&PipelineConfig, &mut dyn FnMut(Event)) -> Result<Value, PipelineError>;

/// One stage of the pipeline.
pub struct Stage {
    pub name: &'static str,
    pub run: StageFn,
}

pub const STAGES: [Stage; 11] = [
    Stage {
        name: "base",
        run: base,
    },
    Stage {
        name: "data",
        run: data,
    },
    Stage {
        name: "eval-before",
        run: eval_before,
    },
    Stage {
        name: "cpt",
        run: cpt_stage,
    },
    Stage {
        name: "sft",
        run: sft_stage,
    },
    Stage {
        name: "csfte",
        run: csfte_stage,
    },
    Stage {
        name: "dpo",
        run: dpo_stage,
    },
    Stage {
        name: "export",
        run: export,
    },
    Stage {
        name: "quantize",
        run: quantize_stage,
    },
    Stage {
        name: "eval-after",
        run: eval_after,
    },
    Stage {
        name: "report",
        run: report,
    },
];

/// The final quantized model of a pipeline run.
pub fn final_gguf(cfg: &PipelineConfig) -> PathBuf {
    cfg.dir
        .join(format!("final.{}.gguf", cfg.quant.to_ascii_uppercase()))
}

/// The starting GGUF as an F32 HF checkpoint (`base/`).
fn base(cfg: &PipelineConfig, _: &mut dyn FnMut(Event)) -> Result<Value, PipelineError> {
    let c = quantize::to_hf::to_hf(
        &cfg.base_gguf,
        &cfg.dir.join("base"),
        llama_spec::hf::safetensors::Dtype::F32,
        true,
    )?;
    Ok(json!({"from": cfg.base_gguf, "layers": c.num_hidden_layers, "hidden": c.hidden_size}))
}

/// Each corpus tokenized with the base model's tokenizer (`data/<name>/`).
fn data(cfg: &PipelineConfig, _: &mut dyn FnMut(Event)) -> Result<Value, PipelineError> {
    let d = &cfg.dir;
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
    Ok(json!({"tokens": tokens}))
}

/// `tasks` and the Chinese-token fraction on a GGUF file (the first `eval_limit` items of each,
/// or its own `task_limits`), as one report written to `out`.
fn measure(
    cfg: &PipelineConfig,
    gguf: &Path,
    tasks: &[String],
    out: &Path,
) -> Result<llm_eval::Report, PipelineError> {
    let mut m = llm_eval::EdgeModel::load(gguf, 2048, cfg.threads)?;
    let mut tasks = llm_eval::tasks::resolve(tasks)?;
    tasks.retain(|t| t != "zh-fraction");
    tasks.push("zh-fraction".into());
    let mut results = BTreeMap::new();
    let mut seconds = 0.0;
    for t in tasks {
        let opts = llm_eval::RunOptions {
            limit: cfg.task_limits.get(&t).copied().or(cfg.eval_limit),
            exec_threads: cfg.threads,
            ..llm_eval::RunOptions::default()
        };
        let r = llm_eval::evaluate(&mut m, &[t], &cfg.eval_data, &opts)?;
        seconds += r.seconds;
        results.extend(r.tasks);
    }
    let r = llm_eval::Report::new(m.name(), &cfg.eval_data, cfg.eval_limit, results, seconds);
    r.write(out)?;
    Ok(r)
}

fn evaluate(cfg: &PipelineConfig, gguf: &Path, out: &Path) -> Result<Value, PipelineError> {
    let r = measure(cfg, gguf, &cfg.eval_tasks, out)?;
    Ok(json!({"average": r.average, "zh_fraction": r.zh_fraction, "scores": r.scores}))
}

fn eval_before(cfg: &PipelineConfig, _: &mut dyn FnMut(Event)) -> Result<Value, PipelineError> {
    evaluate(cfg, &cfg.base_gguf, &cfg.dir.join("eval-before.json"))
}

/// A stage's config with its overrides and the pipeline's own (`extra`) applied, checked.
fn stage_config<T: RunConfig>(st: &StageConfig, extra: Vec<String>) -> Result<T, PipelineError> {
    let mut overrides = st.set.clone();
    overrides.extend(extra);
    Ok(T::load(&st.config, &overrides)?)
}

fn quoted(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
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

/// A training run's first and last loss and validation loss.
fn losses(run: &Path) -> Value {
    let (a, b) = first_last(run, "loss");
    let (va, vb) = first_last(run, "val_loss_combined");
    let (da, db) = first_last(run, "val_loss");
    json!({"loss_first": a, "loss_last": b, "val_first": va.or(da), "val_last": vb.or(db)})
}

/// CPT from `base/` on the prepared corpora (`cpt/`).
fn cpt_stage(cfg: &PipelineConfig, event: &mut dyn FnMut(Event)) -> Result<Value, PipelineError> {
    let d = &cfg.dir;
    let corpora: Vec<String> = cfg
        .corpus
        .iter()
        .map(|c| {
            format!(
                "{{name={:?}, path={}, role={:?}}}",
                c.name,
                quoted(&d.join("data").join(&c.name)),
                c.role
            )
        })
        .collect();
    let extra = vec![
        format!("model.path={}", quoted(&d.join("base"))),
        format!("data.corpus=[{}]", corpora.join(", ")),
        format!("output.dir={}", quoted(&d.join("cpt"))),
    ];
    let c: CptConfig = stage_config(&cfg.cpt, extra)?;
    cpt::run(&c, Resume::Auto, event)?;
    Ok(losses(&d.join("cpt")))
}

/// An alignment stage continuing from stage `from`'s last checkpoint into `out` (under the
/// run directory), with `extra` overrides.
fn align_stage(
    cfg: &PipelineConfig,
    stage: align::Stage,
    st: &StageConfig,
    (from, out): (&str, &str),
    mut extra: Vec<String>,
    event: &mut dyn FnMut(Event),
) -> Result<Value, PipelineError> {
    let d = &cfg.dir;
    let out = d.join(out);
    extra.push(format!(
        "model.path={}",
        quoted(&d.join(from).join("latest"))
    ));
    extra.push(format!("output.dir={}", quoted(&out)));
    let c: AlignConfig = stage_config(st, extra)?;
    align::run(&c, stage, Resume::Auto, event)?;
    Ok(losses(&out))
}

fn sft_stage(cfg: &PipelineConfig, event: &mut dyn FnMut(Event)) -> Result<Value, PipelineError> {
    align_stage(
        cfg,
        align::Stage::Sft,
        &cfg.sft,
        ("cpt", "sft"),
        Vec::new(),
        event,
    )
}

/// C-SFT-E: the SFT data and the emotional-support dialogues mixed at `emotion_share`
/// (`csfte/train.jsonl`, `data::convert::mix`), SFT from the SFT checkpoint on it (`csfte/`);
/// then the share of Chinese tokens in replies and the emotional-intelligence tasks before (the
/// SFT model) and after, each converted to Q8_0 (`csfte/eval-{sft,csfte}.json`). Without
/// `[csfte]`, nothing (DPO follows SFT).
fn csfte_stage(cfg: &PipelineConfig, event: &mut dyn FnMut(Event)) -> Result<Value, PipelineError> {
    let Some(c) = &cfg.csfte else {
        return Ok(json!({"skipped": "no [csfte] in the pipeline config"}));
    };
    let d = &cfg.dir;
    std::fs::create_dir_all(d.join("csfte")).map_err(PipelineError::io(d.join("csfte")))?;
    let one = |files: &[PathBuf], name: &str| -> Result<PathBuf, PipelineError> {
        let mut text = String::new();
        for f in files {
            text.push_str(&std::fs::read_to_string(f).map_err(PipelineError::io(f))?);
            if !text.ends_with('\n') {
                text.push('\n');
            }
        }
        let p = d.join("csfte").join(name);
        llama_spec::atomic::write_atomic(&p, text.as_bytes()).map_err(PipelineError::io(&p))?;
        Ok(p)
    };
    let inputs = [
        MixInput {
            path: one(&c.sft_data, "sft-data.jsonl")?,
            weight: 1.0 - c.emotion_share,
        },
        MixInput {
            path: one(&c.emotion_data, "emotion-data.jsonl")?,
            weight: c.emotion_share,
        },
    ];
    let mixed = d.join("csfte").join("train.jsonl");
    let m = mix(&inputs, &mixed, None, false, c.seed)?;
    let st = StageConfig {
        config: c.config.clone(),
        set: c.set.clone(),
    };
    let extra = vec![format!("data.train=[{}]", quoted(&mixed))];
    let mut v = align_stage(cfg, align::Stage::Sft, &st, ("sft", "csfte"), extra, event)?;
    v["mix"] = json!({"sft": m.taken[0].1, "emotion": m.taken[1].1});
    for (when, from) in [("before", "sft"), ("after", "csfte")] {
        let gguf = d.join("csfte").join(format!("{from}.Q8_0.gguf"));
        let opts = quantize::convert::ConvertOptions {
            ftype: quantize::policy::FileType::parse("q8_0").ok_or_else(|| {
                PipelineError::File {
                    path: gguf.clone(),
                    message: "q8_0: not a GGUF file type".into(),
                }
            })?,
            overrides: Vec::new(),
            name: None,
            progress: false,
        };
        quantize::convert::convert(&d.join(from).join("latest"), &gguf, &opts)?;
        let out = d.join("csfte").join(format!("eval-{from}.json"));
        let r = measure(cfg, &gguf, &c.ei_tasks, &out)?;
        v[format!("zh_{when}")] = json!(r.zh_fraction);
        let ei: BTreeMap<&String, &BTreeMap<String, f64>> = r
            .tasks
            .iter()
            .filter(|(t, _)| t.as_str() != "zh-fraction")
            .map(|(t, res)| (t, &res.metrics))
            .collect();
        v[format!("ei_{when}")] = json!(ei);
        std::fs::remove_file(&gguf).map_err(PipelineError::io(&gguf))?;
    }
    Ok(v)
}

fn dpo_stage(cfg: &PipelineConfig, event: &mut dyn FnMut(Event)) -> Result<Value, PipelineError> {
    let from = if cfg.csfte.is_some() { "csfte" } else { "sft" };
    align_stage(
        cfg,
        align::Stage::Dpo,
        &cfg.dpo,
        (from, "dpo"),
        Vec::new(),
        event,
    )
}

/// The final HF checkpoint on its own (no optimizer state), F32 so that quantization starts
/// from the trained weights exactly (`final-hf/`).
fn export(cfg: &PipelineConfig, _: &mut dyn FnMut(Event)) -> Result<Value, PipelineError> {
    let d = &cfg.dir;
    let src = d.join("dpo/latest");
    let device = Backend::Flex.device()?;
    let (llama, config) = checkpoint::load(&src, &device)?;
    let opts = SaveOptions {
        tokenizer_from: Some(src.clone()),
        ..SaveOptions::default()
    };
    checkpoint::save(&llama, &config, d.join("final-hf"), &opts)?;
    Ok(json!({"hf": d.join("final-hf")}))
}

fn quantize_stage(cfg: &PipelineConfig, _: &mut dyn FnMut(Event)) -> Result<Value, PipelineError> {
    let gguf = final_gguf(cfg);
    let ftype =
        quantize::policy::FileType::parse(&cfg.quant).ok_or_else(|| PipelineError::File {
            path: cfg.dir.clone(),
            message: format!("quant {:?}: not a GGUF file type", cfg.quant),
        })?;
    let opts = quantize::convert::ConvertOptions {
        ftype,
        overrides: Vec::new(),
        name: None,
        progress: true,
    };
    quantize::convert::convert(&cfg.dir.join("final-hf"), &gguf, &opts)?;
    let bytes = std::fs::metadata(&gguf).map(|m| m.len()).unwrap_or(0);
    Ok(json!({"gguf": gguf, "bytes": bytes}))
}

/// Decode speed of the final GGUF: a 128-token greedy reply to a Chinese prompt.
fn decode_speed(gguf: &Path, threads: usize) -> Result<f64, PipelineError> {
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

fn eval_after(cfg: &PipelineConfig, _: &mut dyn FnMut(Event)) -> Result<Value, PipelineError> {
    let gguf = final_gguf(cfg);
    let mut v = evaluate(cfg, &gguf, &cfg.dir.join("eval-after.json"))?;
    v["decode_tokens_per_s"] = json!(decode_speed(&gguf, cfg.threads)?);
    Ok(v)
}

/// Tables 3-5 and their chart (`report/`, as `eval-report` writes them) over every result the
/// run wrote: the original GGUF, the SFT and C-SFT-E models, the final GGUF.
fn report(cfg: &PipelineConfig, _: &mut dyn FnMut(Event)) -> Result<Value, PipelineError> {
    let d = &cfg.dir;
    let files = [
        d.join("eval-before.json"),
        d.join("csfte/eval-sft.json"),
        d.join("csfte/eval-csfte.json"),
        d.join("eval-after.json"),
    ];
    let reports = files
        .iter()
        .filter(|p| p.is_file())
        .map(|p| llm_eval::Report::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    let out = d.join("report");
    let (tables, _) = crate::eval_chart::write_report(&reports, &[], &out)?;
    let filled = tables.iter().filter(|t| !t.rows.is_empty()).count();
    Ok(json!({"dir": out, "models": reports.len(), "tables": filled}))
}

fn f(v: &Value, k: &str, digits: usize) -> String {
    v.get(k)
        .and_then(Value::as_f64)
        .map_or_else(|| "-".to_string(), |x| format!("{x:.digits$}"))
}

/// Emotional-intelligence scores as `, emotion acc 30.0 / macro_f1 25.1`: each task's primary
/// metric, then its macro-F1 when it has one.
fn ei(tasks: &Value) -> String {
    let Some(m) = tasks.as_object() else {
        return String::new();
    };
    let mut s = String::new();
    for (task, metrics) in m {
        let Some(p) = llm_eval::tasks::primary_metric(task) else {
            continue;
        };
        s.push_str(&format!(", {task} {p} {}", f(metrics, p, 1)));
        if metrics.get("macro_f1").is_some() {
            s.push_str(&format!(" / macro_f1 {}", f(metrics, "macro_f1", 1)));
        }
    }
    s
}

/// The summary table: one row per stage from what it recorded.
pub(super) fn summary(done: &BTreeMap<String, Value>) -> String {
    let mut s = String::from(
        "| stage | time | before | after | notes |\n| --- | ---: | ---: | ---: | --- |\n",
    );
    for stage in STAGES.iter().map(|s| s.name) {
        let v = done.get(stage).cloned().unwrap_or(Value::Null);
        let t = format!(
            "{:.0} s",
            v.get("seconds").and_then(Value::as_f64).unwrap_or(0.0)
        );
        let (before, after, notes) = match stage {
            "csfte" if v.get("skipped").is_some() => {
                (String::new(), String::new(), "skipped".to_string())
            }
            "csfte" => (
                format!(
                    "loss {}, zh tokens {} %{}",
                    f(&v, "loss_first", 3),
                    f(&v, "zh_before", 1),
                    ei(&v["ei_before"])
                ),
                format!(
                    "loss {}, zh tokens {} %{}",
                    f(&v, "loss_last", 3),
                    f(&v, "zh_after", 1),
                    ei(&v["ei_after"])
                ),
                format!(
                    "val loss {} -> {}; {} SFT + {} emotional-support dialogues",
                    f(&v, "val_first", 3),
                    f(&v, "val_last", 3),
                    v["mix"]["sft"],
                    v["mix"]["emotion"]
                ),
            ),
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
                let decode = v
                    .get("decode_tokens_per_s")
                    .and_then(Value::as_f64)
                    .map_or(String::new(), |t| format!("decode {t:.1} t/s"));
                if stage == "eval-before" {
                    (format!("{avg}, {zh}"), String::new(), String::new())
                } else {
                    (String::new(), format!("{avg}, {zh}"), decode)
                }
            }
            "report" => (
                String::new(),
                String::new(),
                format!("{} models, {} tables in report/", v["models"], v["tables"]),
            ),
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
