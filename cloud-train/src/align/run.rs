//! The SFT and DPO loops: chat data tokenized once, shuffled per epoch, micro-batches padded to
//! their longest example, gradient accumulation, clipping, AdamW and the schedule shared with
//! `cpt`, validation, metrics, checkpoints (the same format, so runs resume the same way).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use llama_spec::chat::{ChatTemplate, CHATML_TEMPLATE, LLAMA3_TEMPLATE};
use llama_spec::LlamaConfig;

use super::config::AlignConfig;
use super::data::{encode, parse_preference, parse_sft, Encoded, Turns};
use crate::checkpoint;
use crate::cpt::config::ModelSection;
use crate::cpt::state::{self, MetricsWriter, TrainerState, METRICS, OPTIMIZER};
use crate::cpt::{Event, Resume};
use crate::data::{splitmix64, Permutation};
use crate::dist::{my_slice, Collective, DataParallel, Ranks, StepError};
use crate::model::Llama;
use crate::train::dpo::{self, DpoMetrics, PairLogps};
use crate::train::optim::accumulate;
use crate::train::{
    loss_and_grads, loss_and_grads_weighted, position_nll, Batch, MemoryPlan, Schedule,
};

/// Which alignment stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Sft,
    Dpo,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Sft => "sft",
            Stage::Dpo => "dpo",
        }
    }
}

/// A preference pair, with the reference model's log-probabilities once computed.
#[derive(Debug, Clone)]
struct Pair {
    chosen: Encoded,
    rejected: Encoded,
    ref_logps: (f64, f64),
}

enum Examples {
    Sft(Vec<Encoded>),
    Dpo(Vec<Pair>),
}

impl Examples {
    fn len(&self) -> usize {
        match self {
            Examples::Sft(v) => v.len(),
            Examples::Dpo(v) => v.len(),
        }
    }
}

/// What the loop ended with.
#[derive(Debug, Clone)]
pub struct AlignSummary {
    pub first_step: u64,
    pub steps: u64,
    pub train_examples: usize,
    pub val_examples: usize,
    /// Records skipped by reason.
    pub skipped: BTreeMap<String, u64>,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    pub last_val_loss: Option<f64>,
    /// DPO: the metrics of the last step and of the last validation.
    pub last_dpo: Option<DpoMetrics>,
    pub last_val_dpo: Option<DpoMetrics>,
    pub tokens_per_s: f64,
    pub elapsed_s: f64,
    pub last_checkpoint: Option<PathBuf>,
}

/// The chat template: `[model] chat_template`, else the model directory's
/// `tokenizer_config.json`, else Llama-3's. Also the `tokenizer_config.json` to write into
/// checkpoints when the model directory has none (so that `quantize convert` puts the template
/// into the GGUF and the edge runtime formats chats the same way).
fn chat_template(model: &ModelSection) -> anyhow::Result<(ChatTemplate, Option<Vec<u8>>)> {
    let from_dir = model
        .path
        .as_ref()
        .map(|p| p.join("tokenizer_config.json"))
        .filter(|p| p.exists());
    let builtin = |name: &str| -> Option<(&'static str, &'static str, &'static str)> {
        match name {
            "llama3" => Some((LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>")),
            "chatml" => Some((CHATML_TEMPLATE, "", "<|im_end|>")),
            _ => None,
        }
    };
    let choice = model.chat_template.clone();
    let (tmpl, write) = match (choice.as_deref(), from_dir) {
        (Some(name), _) if builtin(name).is_some() => {
            let (src, bos, eos) = builtin(name).unwrap_or_default();
            (ChatTemplate::new(src, bos, eos, name)?, true)
        }
        (Some(path), _) => (
            ChatTemplate::from_tokenizer_config(path)?
                .with_context(|| format!("{path}: no chat_template"))?,
            true,
        ),
        (None, Some(p)) => match ChatTemplate::from_tokenizer_config(&p)? {
            Some(t) => (t, false),
            None => (
                ChatTemplate::new(LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>", "llama3")?,
                true,
            ),
        },
        (None, None) => (
            ChatTemplate::new(LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>", "llama3")?,
            true,
        ),
    };
    let config = write.then(|| {
        let json = serde_json::json!({
            "bos_token": tmpl.bos_token, "eos_token": tmpl.eos_token,
            "chat_template": tmpl.source(),
        });
        format!("{json:#}\n").into_bytes()
    });
    Ok((tmpl, config))
}

fn tokenizer_path(model: &ModelSection) -> anyhow::Result<PathBuf> {
    match (&model.tokenizer, &model.path) {
        (Some(t), _) => Ok(t.clone()),
        (None, Some(p)) => Ok(p.join("tokenizer.json")),
        (None, None) => {
            bail!("[model]: give `tokenizer` (a tokenizer.json) for a random-init model")
        }
    }
}

/// Read, parse, template and tokenize every record; split train/val.
fn load(
    cfg: &AlignConfig,
    stage: Stage,
    tok: &tokenizers::Tokenizer,
    tmpl: &ChatTemplate,
) -> anyhow::Result<(Examples, Examples, BTreeMap<String, u64>)> {
    let mut skipped: BTreeMap<String, u64> = BTreeMap::new();
    let (mut train_sft, mut val_sft, mut train_dpo, mut val_dpo) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut ordinal = 0u64;
    for path in &cfg.data.train {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut r = std::io::BufReader::new(f);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = r
                .read_until(b'\n', &mut line)
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            let mut skip = |why: &str| *skipped.entry(why.to_string()).or_default() += 1;
            let Ok(text) = std::str::from_utf8(&line) else {
                skip("invalid_utf8");
                continue;
            };
            if text.trim().is_empty() {
                continue;
            }
            let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
                skip("malformed_json");
                continue;
            };
            let to_val = cfg.data.val_fraction > 0.0
                && ((splitmix64(cfg.data.seed ^ splitmix64(ordinal)) >> 11) as f64
                    / (1u64 << 53) as f64)
                    < cfg.data.val_fraction;
            ordinal += 1;
            let fits = |e: &Encoded| e.ids.len() <= cfg.data.max_len && e.trained() > 0;
            match stage {
                Stage::Sft => {
                    let Ok(msgs) = parse_sft(&v) else {
                        skip("bad_record");
                        continue;
                    };
                    match encode(tok, tmpl, &msgs, Turns::All) {
                        Ok(e) if fits(&e) => {
                            if to_val {
                                val_sft.push(e)
                            } else {
                                train_sft.push(e)
                            }
                        }
                        Ok(_) => skip("too_long"),
                        Err(_) => skip("template_error"),
                    }
                }
                Stage::Dpo => {
                    let Ok((prompt, chosen, rejected)) = parse_preference(&v) else {
                        skip("bad_record");
                        continue;
                    };
                    let conv = |reply: &str| {
                        let mut m = prompt.clone();
                        m.push(llama_spec::chat::Message::assistant(reply));
                        encode(tok, tmpl, &m, Turns::Last)
                    };
                    match (conv(&chosen), conv(&rejected)) {
                        (Ok(c), Ok(r)) if fits(&c) && fits(&r) => {
                            let p = Pair {
                                chosen: c,
                                rejected: r,
                                ref_logps: (0.0, 0.0),
                            };
                            if to_val {
                                val_dpo.push(p)
                            } else {
                                train_dpo.push(p)
                            }
                        }
                        (Ok(_), Ok(_)) => skip("too_long"),
                        _ => skip("template_error"),
                    }
                }
            }
        }
    }
    let (train, val) = match stage {
        Stage::Sft => (Examples::Sft(train_sft), Examples::Sft(val_sft)),
        Stage::Dpo => (Examples::Dpo(train_dpo), Examples::Dpo(val_dpo)),
    };
    if train.len() == 0 {
        bail!(
            "no usable training examples in {:?} (skipped: {skipped:?})",
            cfg.data.train
        );
    }
    Ok((train, val, skipped))
}

fn rows_of(es: &[&Encoded]) -> Vec<(Vec<u32>, Vec<bool>)> {
    es.iter().map(|e| (e.ids.clone(), e.mask.clone())).collect()
}

fn batch_of(rows: &[(Vec<u32>, Vec<bool>)], device: &Device) -> Batch {
    let r: Vec<(&[u32], &[u32], &[bool])> = rows
        .iter()
        .map(|(i, m)| (i.as_slice(), i.as_slice(), m.as_slice()))
        .collect();
    Batch::masked(&r, 0, device)
}

/// Per row: how many positions predict a trained token.
fn counts(rows: &[(Vec<u32>, Vec<bool>)]) -> Vec<usize> {
    rows.iter()
        .map(|(_, m)| m.iter().skip(1).filter(|&&x| x).count())
        .collect()
}

/// Response-token log-probability sums of each row (chosen rows, then rejected rows).
fn logps(model: &Llama, pairs: &[&Pair], device: &Device, chunk: usize) -> Vec<f64> {
    let mut es: Vec<&Encoded> = pairs.iter().map(|p| &p.chosen).collect();
    es.extend(pairs.iter().map(|p| &p.rejected));
    let rows = rows_of(&es);
    let b = batch_of(&rows, device);
    let seq = b.ids.dims()[1];
    let nll = position_nll(model, &b, chunk);
    dpo::sequence_logps(&nll, seq, &counts(&rows), false)
}

fn pair_logps(
    pairs: &[&Pair],
    policy: &[f64],
    rows: &[(Vec<u32>, Vec<bool>)],
    mean: bool,
) -> Vec<PairLogps> {
    let k = pairs.len();
    let n = counts(rows);
    let norm = |v: f64, i: usize| if mean { v / n[i].max(1) as f64 } else { v };
    (0..k)
        .map(|i| PairLogps {
            policy_chosen: norm(policy[i], i),
            policy_rejected: norm(policy[k + i], k + i),
            ref_chosen: norm(pairs[i].ref_logps.0, i),
            ref_rejected: norm(pairs[i].ref_logps.1, k + i),
        })
        .collect()
}

fn scale(m: DpoMetrics, by: f64) -> DpoMetrics {
    DpoMetrics {
        rewards_chosen: m.rewards_chosen / by,
        rewards_rejected: m.rewards_rejected / by,
        rewards_margins: m.rewards_margins / by,
        rewards_accuracies: m.rewards_accuracies / by,
    }
}

/// The metrics summed over ranks.
fn sum_metrics(dp: &DataParallel, m: DpoMetrics) -> Result<DpoMetrics, crate::dist::CommError> {
    let mut v = [
        m.rewards_chosen,
        m.rewards_rejected,
        m.rewards_margins,
        m.rewards_accuracies,
    ];
    dp.sum_f64(&mut v)?;
    Ok(DpoMetrics {
        rewards_chosen: v[0],
        rewards_rejected: v[1],
        rewards_margins: v[2],
        rewards_accuracies: v[3],
    })
}

fn add(a: &mut DpoMetrics, b: DpoMetrics) {
    a.rewards_chosen += b.rewards_chosen;
    a.rewards_rejected += b.rewards_rejected;
    a.rewards_margins += b.rewards_margins;
    a.rewards_accuracies += b.rewards_accuracies;
}

/// The reference log-probabilities of every pair, computed once with the starting model and
/// kept in the run directory (a resumed run no longer has that model).
fn reference_logps(
    model: &Llama,
    sets: [&mut Vec<Pair>; 2],
    out: &Path,
    fingerprint: &str,
    (mbs, chunk): (usize, usize),
    device: &Device,
    comm: &dyn Collective,
) -> anyhow::Result<()> {
    let path = out.join("reference_logps.json");
    let saved: Option<serde_json::Value> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .filter(|v: &serde_json::Value| v["fingerprint"] == fingerprint);
    let mut all = Vec::new();
    for (s, set) in sets.into_iter().enumerate() {
        let values: Vec<(f64, f64)> = match &saved {
            Some(v) => serde_json::from_value(v["sets"][s].clone())
                .with_context(|| format!("{}", path.display()))?,
            None => {
                // Groups dealt out to the ranks; the sum over ranks fills every value.
                let mut flat = vec![0.0; 2 * set.len()];
                let mbs = mbs.max(1);
                for (g, group) in set.chunks(mbs).enumerate() {
                    if g % comm.world() != comm.rank() {
                        continue;
                    }
                    let refs: Vec<&Pair> = group.iter().collect();
                    let l = logps(model, &refs, device, chunk);
                    let k = group.len();
                    for i in 0..k {
                        flat[2 * (g * mbs + i)] = l[i];
                        flat[2 * (g * mbs + i) + 1] = l[k + i];
                    }
                }
                comm.all_reduce_sum_f64(&mut flat)?;
                flat.chunks(2).map(|c| (c[0], c[1])).collect()
            }
        };
        if values.len() != set.len() {
            bail!(
                "{}: {} pairs, the data has {}",
                path.display(),
                values.len(),
                set.len()
            );
        }
        for (p, v) in set.iter_mut().zip(&values) {
            p.ref_logps = *v;
        }
        all.push(values);
    }
    if saved.is_none() && comm.rank() == 0 {
        let json = serde_json::json!({"fingerprint": fingerprint, "sets": all});
        llama_spec::atomic::write_atomic(&path, format!("{json}\n").as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Run (or continue) an SFT or DPO config.
pub fn run(
    cfg: &AlignConfig,
    stage: Stage,
    resume: Resume,
    event: impl FnMut(Event),
) -> anyhow::Result<AlignSummary> {
    let (Ranks { device, comm, .. }, mut event) = crate::cpt::run::start_ranks(&cfg.train, event)?;
    let rank = comm.rank();
    let out = &cfg.output.dir;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let tok_path = tokenizer_path(&cfg.model)?;
    let tok = llama_spec::tokenizer::from_tokenizer_json(&tok_path)
        .with_context(|| format!("loading {}", tok_path.display()))?;
    let (tmpl, tokenizer_config) = chat_template(&cfg.model)?;
    let (mut train, mut val, skipped) = load(cfg, stage, &tok, &tmpl)?;
    let (n_train, n_val) = (train.len(), val.len());
    if !skipped.is_empty() {
        event(Event::Note(format!("skipped records: {skipped:?}")));
    }
    let resume_key = serde_json::json!({
        "stage": stage.name(), "data": cfg.data.train, "max_len": cfg.data.max_len,
        "val_fraction": cfg.data.val_fraction, "seed": cfg.data.seed,
        "mbs": cfg.train.mbs, "gbs": cfg.train.gbs, "train_examples": n_train,
    });

    let from = state::resume_from(out, resume)?;
    let plan: MemoryPlan = cfg.train.memory_plan();
    let chunk = plan.ce_chunk.unwrap_or(4096);
    let (model, config, mut trainer): (Llama, LlamaConfig, TrainerState) = match &from {
        Some(dir) => {
            let st = state::read_state(dir).map_err(anyhow::Error::msg)?;
            if st.resume_key != resume_key {
                bail!(
                    "{}: made with other data or batch settings:\n  checkpoint: {}\n  config:     {}",
                    dir.display(),
                    st.resume_key,
                    resume_key
                );
            }
            let (model, config) = checkpoint::load(dir, &device)?;
            let model = model.train();
            if rank == 0 {
                state::truncate_metrics(&out.join(METRICS), st.step)?;
            }
            (model, config, st)
        }
        None => {
            let (model, config) = state::starting_model(&cfg.model, &device)?;
            if rank == 0 {
                state::truncate_metrics(&out.join(METRICS), 0)?;
            }
            let st = TrainerState::fresh(resume_key.clone(), &cfg.output.save_dtype);
            (model.train(), config, st)
        }
    };
    let mut model = model;
    let mut dp = DataParallel::new(
        comm,
        cfg.train.adamw(),
        cfg.train.dist().zero,
        &model,
        &device,
    );
    if let Some(dir) = &from {
        dp.load_optimizer(&model, &dir.join(OPTIMIZER), trainer.adam_step)?;
    }
    let (gbs, mbs) = (cfg.train.gbs, cfg.train.mbs);
    dp.accumulation(gbs, mbs).map_err(anyhow::Error::msg)?;
    dp.check_same(
        "(parameters, step, examples, gbs, mbs)",
        &[
            model.num_params() as f64,
            trainer.step as f64,
            n_train as f64,
            gbs as f64,
            mbs as f64,
        ],
    )?;
    if let (Examples::Dpo(t), Examples::Dpo(v)) = (&mut train, &mut val) {
        if from.is_some() && !out.join("reference_logps.json").exists() {
            bail!(
                "{}: no reference_logps.json; a DPO run cannot resume without the reference log-probabilities",
                out.display()
            );
        }
        event(Event::Note(format!(
            "reference log-probabilities of {} pairs",
            t.len() + v.len()
        )));
        reference_logps(
            &model,
            [t, v],
            out,
            &resume_key.to_string(),
            (cfg.train.mbs, chunk),
            &device,
            dp.comm(),
        )?;
    }
    let total = cfg.total_steps(n_train);
    let schedule = Schedule {
        peak: cfg.train.lr,
        min_lr: cfg.train.min_lr,
        warmup: cfg.train.warmup(total),
        total,
        decay: cfg.train.schedule,
    };
    trainer.schedule = serde_json::json!({
        "peak": schedule.peak, "min_lr": schedule.min_lr, "warmup": schedule.warmup,
        "total": schedule.total, "decay": schedule.decay,
    });
    let extra = tokenizer_config
        .map(|b| vec![("tokenizer_config.json".to_string(), b)])
        .unwrap_or_default();
    let save_opts = state::save_options(&cfg.model, &cfg.output, extra)?;
    let mut metrics = if rank == 0 {
        Some(MetricsWriter::open(&out.join(METRICS)).map_err(anyhow::Error::msg)?)
    } else {
        None
    };
    event(Event::Start {
        first_step: trainer.step,
        total_steps: total,
        params: model.num_params(),
        resumed_from: from.clone(),
    });
    let run_start = Instant::now();
    let elapsed_before = trainer.elapsed_s;
    let mut summary = AlignSummary {
        first_step: trainer.step,
        steps: trainer.step,
        train_examples: n_train,
        val_examples: n_val,
        skipped,
        first_loss: None,
        last_loss: None,
        last_val_loss: None,
        last_dpo: None,
        last_val_dpo: None,
        tokens_per_s: 0.0,
        elapsed_s: 0.0,
        last_checkpoint: from.clone(),
    };
    let world = dp.world();
    let order = |i: u64| -> usize {
        let n = n_train as u64;
        let perm = Permutation::new(n, splitmix64(cfg.data.seed ^ (i / n)));
        perm.apply(i % n) as usize
    };
    let mut tokens_run = 0u64;
    let mut saved_at = trainer.step;
    while trainer.step < total {
        let t0 = Instant::now();
        let lr = schedule.lr(trainer.step);
        let ids: Vec<usize> = (0..gbs as u64)
            .map(|j| order(trainer.sequences + j))
            .collect();
        let mut grads = GradientsParams::new();
        let mut loss = 0.0;
        let mut step_tokens = 0u64;
        let mut dpo_sums = DpoMetrics::default();
        match &train {
            Examples::Sft(ex) => {
                let all: Vec<&Encoded> = ids.iter().map(|&i| &ex[i]).collect();
                // Token-weighted over the whole global batch, whichever rank computes a part.
                let total_trained: usize = counts(&rows_of(&all)).iter().sum();
                for group in my_slice(&all, rank, world).chunks(mbs) {
                    let rows = rows_of(group);
                    let n: usize = counts(&rows).iter().sum();
                    step_tokens += rows.iter().map(|(i, _)| i.len() as u64).sum::<u64>();
                    let b = batch_of(&rows, &device);
                    let out = loss_and_grads(&model, &b, &plan);
                    let w = n as f64 / total_trained.max(1) as f64;
                    loss += out.loss * w;
                    accumulate(&model, &mut grads, out.grads, w);
                }
            }
            Examples::Dpo(ex) => {
                let all: Vec<&Pair> = ids.iter().map(|&i| &ex[i]).collect();
                let mean = cfg.dpo.loss.length_normalized();
                for group in my_slice(&all, rank, world).chunks(mbs) {
                    let mut es: Vec<&Encoded> = group.iter().map(|p| &p.chosen).collect();
                    es.extend(group.iter().map(|p| &p.rejected));
                    let rows = rows_of(&es);
                    step_tokens += rows.iter().map(|(i, _)| i.len() as u64).sum::<u64>();
                    let b = batch_of(&rows, &device);
                    let seq = b.ids.dims()[1];
                    let n = counts(&rows);
                    let response: Vec<bool> = rows
                        .iter()
                        .flat_map(|(ids, m)| (0..seq).map(move |t| t + 1 < ids.len() && m[t + 1]))
                        .collect();
                    let mut result = None;
                    let out = loss_and_grads_weighted(&model, &b, &plan, |nll| {
                        let policy = dpo::sequence_logps(nll, seq, &n, false);
                        let pairs = pair_logps(group, &policy, &rows, mean);
                        let o = dpo::dpo(
                            &pairs,
                            cfg.dpo.beta,
                            cfg.dpo.loss,
                            cfg.dpo.label_smoothing,
                            gbs as f64,
                        );
                        let d: Vec<f64> = o.d_chosen.iter().chain(&o.d_rejected).copied().collect();
                        let w = dpo::position_weights(&d, seq, &response, &n, mean);
                        result = Some(o);
                        w
                    });
                    if let Some(o) = result {
                        loss += o.loss;
                        add(&mut dpo_sums, o.sums);
                    }
                    accumulate(&model, &mut grads, out.grads, 1.0);
                }
            }
        }
        let mut totals = [loss, step_tokens as f64];
        dp.sum_f64(&mut totals)?;
        let (loss, step_tokens) = (totals[0], totals[1] as u64);
        let dpo_sums = if stage == Stage::Dpo {
            sum_metrics(&dp, dpo_sums)?
        } else {
            dpo_sums
        };
        let norm;
        (model, norm) =
            dp.step(model, grads, lr, cfg.train.max_grad_norm)
                .map_err(|e| match e {
                    StepError::Diverged(n) => anyhow::anyhow!(
                        "step {}: gradient norm {n}: training diverged",
                        trainer.step + 1
                    ),
                    StepError::Comm(e) => anyhow::anyhow!("step {}: {e}", trainer.step + 1),
                })?;
        if !loss.is_finite() {
            bail!("step {}: loss {loss}: training diverged", trainer.step + 1);
        }
        trainer.step += 1;
        trainer.sequences += gbs as u64;
        trainer.tokens += step_tokens;
        trainer.adam_step = dp.adam_step();
        tokens_run += step_tokens;
        let tokens_per_s = step_tokens as f64 / t0.elapsed().as_secs_f64();
        let last = trainer.step == total;
        let eval_due =
            last || (cfg.output.eval_every > 0 && trainer.step % cfg.output.eval_every == 0);
        trainer.elapsed_s = elapsed_before + run_start.elapsed().as_secs_f64();
        let mut line = serde_json::json!({
            "step": trainer.step,
            "epoch": trainer.sequences as f64 / n_train as f64,
            "lr": lr, "loss": loss, "grad_norm": norm, "tokens_per_s": tokens_per_s,
            "elapsed_s": trainer.elapsed_s,
        });
        let step_dpo = scale(dpo_sums, gbs as f64);
        if stage == Stage::Dpo {
            merge(&mut line, serde_json::to_value(step_dpo)?, "");
            summary.last_dpo = Some(step_dpo);
        }
        if eval_due && n_val > 0 {
            match &val {
                Examples::Sft(ex) => {
                    let (mut sum, mut n) = (0.0, 0usize);
                    for group in ex.chunks(mbs).skip(rank).step_by(world) {
                        let refs: Vec<&Encoded> = group.iter().collect();
                        let rows = rows_of(&refs);
                        let b = batch_of(&rows, &device);
                        sum += position_nll(&model, &b, chunk)
                            .iter()
                            .map(|&v| f64::from(v))
                            .sum::<f64>();
                        n += counts(&rows).iter().sum::<usize>();
                    }
                    let mut t = [sum, n as f64];
                    dp.sum_f64(&mut t)?;
                    let v = t[0] / t[1].max(1.0);
                    line["val_loss"] = v.into();
                    summary.last_val_loss = Some(v);
                }
                Examples::Dpo(ex) => {
                    let mean = cfg.dpo.loss.length_normalized();
                    let (mut l, mut sums) = (0.0, DpoMetrics::default());
                    for group in ex.chunks(mbs).skip(rank).step_by(world) {
                        let refs: Vec<&Pair> = group.iter().collect();
                        let policy = logps(&model, &refs, &device, chunk);
                        let mut es: Vec<&Encoded> = refs.iter().map(|p| &p.chosen).collect();
                        es.extend(refs.iter().map(|p| &p.rejected));
                        let pairs = pair_logps(&refs, &policy, &rows_of(&es), mean);
                        let o = dpo::dpo(
                            &pairs,
                            cfg.dpo.beta,
                            cfg.dpo.loss,
                            cfg.dpo.label_smoothing,
                            n_val as f64,
                        );
                        l += o.loss;
                        add(&mut sums, o.sums);
                    }
                    let mut t = [l];
                    dp.sum_f64(&mut t)?;
                    let l = t[0];
                    let m = scale(sum_metrics(&dp, sums)?, n_val as f64);
                    line["val_loss"] = l.into();
                    merge(&mut line, serde_json::to_value(m)?, "val_");
                    summary.last_val_loss = Some(l);
                    summary.last_val_dpo = Some(m);
                }
            }
        }
        if let Some(metrics) = &mut metrics {
            metrics.write(&line).map_err(anyhow::Error::msg)?;
        }
        summary.first_loss.get_or_insert(loss);
        summary.last_loss = Some(loss);
        event(Event::Line {
            step: trainer.step,
            text: match stage {
                Stage::Sft => format!("loss {loss:.4} lr {lr:.2e} {tokens_per_s:.0} tok/s"),
                Stage::Dpo => format!(
                    "loss {loss:.4} margin {:.3} acc {:.2} lr {lr:.2e}",
                    step_dpo.rewards_margins, step_dpo.rewards_accuracies
                ),
            },
            eval: line.get("val_loss").map(|_| line.to_string()),
        });
        if last || trainer.step % cfg.output.save_every == 0 {
            let dir = state::save_ranked(
                &model,
                &config,
                &dp,
                &trainer,
                out,
                &save_opts,
                cfg.output.keep_last,
            )?;
            saved_at = trainer.step;
            summary.last_checkpoint = Some(dir.clone());
            event(Event::Saved(dir));
        }
    }
    if saved_at != trainer.step {
        let dir = state::save_ranked(
            &model,
            &config,
            &dp,
            &trainer,
            out,
            &save_opts,
            cfg.output.keep_last,
        )?;
        summary.last_checkpoint = Some(dir.clone());
        event(Event::Saved(dir));
    }
    summary.steps = trainer.step;
    summary.elapsed_s = trainer.elapsed_s;
    summary.tokens_per_s = tokens_run as f64 / run_start.elapsed().as_secs_f64().max(1e-9);
    Ok(summary)
}

/// Copy the fields of `from` (an object) into `into`, names prefixed.
fn merge(into: &mut serde_json::Value, from: serde_json::Value, prefix: &str) {
    if let (Some(a), serde_json::Value::Object(b)) = (into.as_object_mut(), from) {
        for (k, v) in b {
            a.insert(format!("{prefix}{k}"), v);
        }
    }
}
