//! The continual pre-training loop: mixed batches, accumulation, clipping, AdamW, the
//! schedule, validation per corpus, metrics, checkpoints and exact resume.

use std::path::PathBuf;
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;

use super::config::{CptConfig, Role};
use super::state::{self, MetricsWriter, TrainerState, METRICS, OPTIMIZER};
use crate::checkpoint;
use crate::data::{Mixer, MixerCorpus, TokenStore, TokenStream};
use crate::dist::{my_slice, DataParallel, Ranks, StepError};
use crate::model::{scalar, Llama};
use crate::train::optim::accumulate;
use crate::train::{loss_and_grads, Batch, Schedule};

/// How to treat an output directory that already holds checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Continue from the newest checkpoint there, if any.
    Auto,
    /// Continue from this checkpoint directory.
    From(PathBuf),
    /// Start over; refused if the output directory has checkpoints.
    Never,
}

/// What the loop reports as it goes (the CLI draws a progress bar from these).
#[derive(Debug, Clone)]
pub enum Event {
    Start {
        first_step: u64,
        total_steps: u64,
        params: usize,
        resumed_from: Option<PathBuf>,
    },
    Step(StepMetrics),
    Saved(PathBuf),
    Note(String),
    /// A finished step of another loop (sft, dpo): its progress text, and on evaluation steps
    /// the metrics line.
    Line {
        step: u64,
        text: String,
        eval: Option<String>,
    },
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StepMetrics {
    pub step: u64,
    pub tokens: u64,
    pub lr: f64,
    pub loss: f64,
    pub grad_norm: f64,
    pub tokens_per_s: f64,
    /// Realized fraction of additional-language sequences so far.
    pub almr: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mfu: Option<f64>,
    pub elapsed_s: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<std::collections::BTreeMap<String, f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss_combined: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct RunSummary {
    pub first_step: u64,
    pub steps: u64,
    pub tokens: u64,
    pub last_loss: Option<f64>,
    pub val_loss_combined: Option<f64>,
    pub almr: f64,
    pub tokens_per_s: f64,
    pub elapsed_s: f64,
    pub last_checkpoint: Option<PathBuf>,
    /// Why the run ended before its last step (a corpus with `on_exhausted = "stop"`).
    pub stopped: Option<String>,
    /// This process's rank (0 reports).
    pub rank: usize,
}

struct Corpus {
    name: String,
    role: Role,
    train: TokenStream,
    val: TokenStream,
}

/// This rank's device and collective (see `dist::Ranks`), each rank's start line reported,
/// and the event sink wrapped so that only rank 0 reports steps, saves and progress.
pub(crate) fn start_ranks(
    train: &super::config::TrainSection,
    mut event: impl FnMut(Event),
) -> anyhow::Result<(Ranks, impl FnMut(Event))> {
    let ranks = Ranks::start(train.backend, &train.dist()).map_err(anyhow::Error::msg)?;
    if let Some(b) = ranks.banner() {
        event(Event::Note(b));
    }
    let rank = ranks.comm.rank();
    let event = move |e: Event| {
        if rank == 0 || matches!(e, Event::Note(_)) {
            event(e)
        }
    };
    Ok((ranks, event))
}

/// Run (or continue) a CPT config.
pub fn run(
    cfg: &CptConfig,
    resume: Resume,
    event: impl FnMut(Event),
) -> anyhow::Result<RunSummary> {
    use anyhow::{bail, Context};
    let (Ranks { device, comm, .. }, mut event) = start_ranks(&cfg.train, event)?;
    let rank = comm.rank();
    let (seq, mbs, gbs) = (cfg.data.seq_len, cfg.train.mbs, cfg.train.gbs);
    let out = &cfg.output.dir;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;

    // Data.
    let mut corpora = Vec::new();
    let mut tokenizer_sha: Option<(String, String)> = None;
    for c in &cfg.data.corpus {
        let store = TokenStore::open(&c.path).with_context(|| format!("corpus {:?}", c.name))?;
        let sha = store.manifest.tokenizer_sha256.clone();
        match &tokenizer_sha {
            Some((first, other)) if *first != sha => bail!(
                "corpus {:?} ({}) was tokenized with another tokenizer than corpus {other:?}: prepare both with the model's tokenizer",
                c.name,
                c.path.display()
            ),
            None => tokenizer_sha = Some((sha, c.name.clone())),
            _ => {}
        }
        corpora.push(Corpus {
            name: c.name.clone(),
            role: c.role,
            train: store.stream("train")?,
            val: store.stream("val")?,
        });
    }
    let weights = cfg.weights().map_err(anyhow::Error::msg)?;
    let mixer_corpora = cfg
        .data
        .corpus
        .iter()
        .zip(&corpora)
        .zip(&weights)
        .map(|((c, k), &w)| MixerCorpus {
            name: c.name.clone(),
            weight: w,
            windows: k.train.windows(seq),
            on_exhausted: c.on_exhausted,
        })
        .collect();
    let mut mixer = Mixer::new(mixer_corpora, cfg.data.seed).map_err(anyhow::Error::msg)?;

    // Model, optimizer and position: fresh or from a checkpoint.
    let from = state::resume_from(out, resume)?;
    let (model, config, mut trainer) = match &from {
        Some(dir) => {
            let st = state::read_state(dir).map_err(anyhow::Error::msg)?;
            if st.resume_key != cfg.resume_key() {
                bail!(
                    "{}: made with other data or batch settings than this config:\n  checkpoint: {}\n  config:     {}\nuse the config of that run, or a new output dir",
                    dir.display(),
                    st.resume_key,
                    cfg.resume_key()
                );
            }
            if st.weights_dtype != "f32" {
                event(Event::Note(format!(
                    "resuming from {} weights: the continuation is close to, not bit-identical with, an uninterrupted run",
                    st.weights_dtype
                )));
            }
            let (model, config) = checkpoint::load(dir, &device)?;
            let model = model.train();
            mixer.fast_forward(st.sequences).map_err(|e| {
                anyhow::anyhow!(
                    "{}: replaying the data order: corpus {:?} ran out",
                    dir.display(),
                    e.name
                )
            })?;
            if mixer.counts() != st.mixer_counts.as_slice() {
                bail!(
                    "{}: the data order does not replay (counts {:?}, saved {:?}): were the corpora prepared again?",
                    dir.display(),
                    mixer.counts(),
                    st.mixer_counts
                );
            }
            if rank == 0 {
                state::truncate_metrics(&out.join(METRICS), st.step)
                    .with_context(|| format!("{}", out.join(METRICS).display()))?;
            }
            (model, config, st)
        }
        None => {
            let (model, config) = state::starting_model(&cfg.model, &device)?;
            if rank == 0 {
                state::truncate_metrics(&out.join(METRICS), 0)
                    .with_context(|| format!("{}", out.join(METRICS).display()))?;
            }
            let mut st = TrainerState::fresh(cfg.resume_key(), &cfg.output.save_dtype);
            st.mixer_counts = mixer.counts().to_vec();
            (model.train(), config, st)
        }
    };
    let mut model = model;
    let params = model.num_params();
    let mut dp = DataParallel::new(comm, cfg.adamw(), cfg.train.dist().zero, &model, &device);
    if let Some(dir) = &from {
        dp.load_optimizer(&model, &dir.join(OPTIMIZER), trainer.adam_step)?;
    }
    // gbs = mbs x accumulation x world; each rank takes its gbs / world draws of a step.
    dp.accumulation(gbs, mbs).map_err(anyhow::Error::msg)?;
    // Every rank must start from the same model, data position and batch geometry.
    dp.check_same(
        "(parameters, step, sequences drawn, gbs, mbs)",
        &[
            params as f64,
            trainer.step as f64,
            mixer.drawn() as f64,
            gbs as f64,
            mbs as f64,
        ],
    )?;
    let total = cfg.total_steps();
    let schedule = Schedule {
        peak: cfg.train.lr,
        min_lr: cfg.train.min_lr,
        warmup: cfg.warmup_steps(),
        total,
        decay: cfg.train.schedule,
    };
    trainer.schedule = serde_json::json!({
        "peak": schedule.peak, "min_lr": schedule.min_lr, "warmup": schedule.warmup,
        "total": schedule.total, "decay": schedule.decay,
    });
    let plan = cfg.memory_plan();
    let save_opts = state::save_options(&cfg.model, &cfg.output, Vec::new())?;
    let mut metrics = if rank == 0 {
        Some(
            MetricsWriter::open(&out.join(METRICS))
                .map_err(|e| anyhow::anyhow!("{}: {e}", out.join(METRICS).display()))?,
        )
    } else {
        None
    };
    let additional: Vec<bool> = corpora.iter().map(|c| c.role == Role::Additional).collect();
    let realized_almr = |m: &Mixer| -> f64 {
        let n = m.drawn().max(1) as f64;
        m.counts()
            .iter()
            .zip(&additional)
            .filter(|(_, &a)| a)
            .map(|(&c, _)| c as f64)
            .sum::<f64>()
            / n
    };
    event(Event::Start {
        first_step: trainer.step,
        total_steps: total,
        params,
        resumed_from: from.clone(),
    });

    let run_start = Instant::now();
    let elapsed_before = trainer.elapsed_s;
    let first_step = trainer.step;
    let mut summary = RunSummary {
        first_step,
        steps: trainer.step,
        tokens: trainer.tokens,
        last_loss: None,
        val_loss_combined: None,
        almr: realized_almr(&mixer),
        tokens_per_s: 0.0,
        elapsed_s: 0.0,
        last_checkpoint: from.clone(),
        stopped: None,
        rank,
    };
    let mut window = Vec::with_capacity(seq + 1);
    let vocab = config.vocab_size;
    let mut saved_at = trainer.step;
    'steps: while trainer.step < total {
        let t0 = Instant::now();
        let lr = schedule.lr(trainer.step);
        let mut grads = GradientsParams::new();
        // The global batch is the same stream of draws at any world size; this rank computes
        // its contiguous slice of `accumulation` micro-batches.
        let mut draws = Vec::with_capacity(gbs);
        for _ in 0..gbs {
            match mixer.next() {
                Ok(d) => draws.push(d),
                Err(e) => {
                    // Every rank draws the same stream, so every rank stops here. The trainer
                    // state keeps the counts of the last finished step.
                    summary.stopped = Some(format!(
                        "corpus {:?} is exhausted after {} windows (on_exhausted = \"stop\")",
                        e.name, e.windows
                    ));
                    break 'steps;
                }
            }
        }
        let micro_global = gbs / mbs;
        let mut loss = 0.0;
        for group in my_slice(&draws, rank, dp.world()).chunks(mbs) {
            let mut rows = Vec::with_capacity(mbs);
            for draw in group {
                let c = &corpora[draw.corpus];
                if !c.train.window(draw.window, seq, &mut window) {
                    bail!("corpus {:?}: window {} out of range", c.name, draw.window);
                }
                if let Some(&bad) = window.iter().find(|&&t| t >= vocab) {
                    bail!(
                        "corpus {:?} has token id {bad}, beyond the model's vocabulary of {vocab}: prepare it with the model's tokenizer",
                        c.name
                    );
                }
                rows.push(window.clone());
            }
            let out = loss_and_grads(&model, &Batch::from_windows(&rows, &device), &plan);
            loss += out.loss / micro_global as f64;
            accumulate(&model, &mut grads, out.grads, 1.0 / micro_global as f64);
        }
        let mut total_loss = [loss];
        dp.sum_f64(&mut total_loss)?;
        let loss = total_loss[0];
        let norm;
        (model, norm) = dp
            .step(model, grads, lr, cfg.train.max_grad_norm)
            .map_err(|e| match e {
                StepError::Diverged(n) => anyhow::anyhow!(
                    "step {}: gradient norm {n}: training diverged (lower lr, or check the data); the last checkpoint is {}",
                    trainer.step + 1,
                    summary.last_checkpoint.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "none".into())
                ),
                StepError::Comm(e) => anyhow::anyhow!("step {}: {e}", trainer.step + 1),
            })?;
        if !loss.is_finite() {
            bail!("step {}: loss {loss}: training diverged", trainer.step + 1);
        }
        trainer.step += 1;
        trainer.tokens += (gbs * seq) as u64;
        trainer.sequences = mixer.drawn();
        trainer.mixer_counts = mixer.counts().to_vec();
        trainer.adam_step = dp.adam_step();
        let dt = t0.elapsed().as_secs_f64();
        let tokens_per_s = (gbs * seq) as f64 / dt;
        let last = trainer.step == total;
        let eval_due =
            last || (cfg.output.eval_every > 0 && trainer.step % cfg.output.eval_every == 0);
        let (val_loss, val_loss_combined) = if eval_due {
            let (per, combined) = validate(&model, &corpora, &weights, cfg, &device, &dp)?;
            (Some(per), combined)
        } else {
            (None, None)
        };
        trainer.elapsed_s = elapsed_before + run_start.elapsed().as_secs_f64();
        let m = StepMetrics {
            step: trainer.step,
            tokens: trainer.tokens,
            lr,
            loss,
            grad_norm: norm,
            tokens_per_s,
            almr: realized_almr(&mixer),
            mfu: cfg
                .train
                .peak_tflops
                .map(|p| 6.0 * params as f64 * tokens_per_s / (p * 1e12)),
            elapsed_s: trainer.elapsed_s,
            val_loss,
            val_loss_combined,
        };
        if let Some(metrics) = &mut metrics {
            metrics
                .write(&serde_json::to_value(&m)?)
                .map_err(anyhow::Error::msg)?;
        }
        summary.last_loss = Some(loss);
        summary.almr = m.almr;
        if m.val_loss_combined.is_some() {
            summary.val_loss_combined = m.val_loss_combined;
        }
        event(Event::Step(m));
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
    let run_s = run_start.elapsed().as_secs_f64();
    summary.steps = trainer.step;
    summary.tokens = trainer.tokens;
    summary.elapsed_s = trainer.elapsed_s;
    summary.tokens_per_s =
        (trainer.step - first_step) as f64 * (gbs * seq) as f64 / run_s.max(1e-9);
    Ok(summary)
}

/// Mean validation loss per corpus over its first `val_sequences` windows, and their
/// mixture-weighted combination. The windows are dealt out to the ranks and the sums
/// all-reduced.
fn validate(
    model: &Llama,
    corpora: &[Corpus],
    weights: &[f64],
    cfg: &CptConfig,
    device: &Device,
    dp: &DataParallel,
) -> anyhow::Result<(std::collections::BTreeMap<String, f64>, Option<f64>)> {
    let seq = cfg.data.seq_len;
    let frozen = model.valid();
    let (rank, world) = (dp.rank(), dp.world());
    let counts: Vec<u64> = corpora
        .iter()
        .map(|c| (cfg.data.val_sequences as u64).min(c.val.windows(seq)))
        .collect();
    let mut sums = vec![0.0; corpora.len()];
    let mut window = Vec::new();
    for ((c, &n), sum) in corpora.iter().zip(&counts).zip(&mut sums) {
        let ids: Vec<u64> = (0..n).filter(|i| *i as usize % world == rank).collect();
        for group in ids.chunks(cfg.train.mbs) {
            let mut flat = Vec::with_capacity(group.len() * (seq + 1));
            for &i in group {
                c.val.window(i, seq, &mut window);
                flat.extend(window.iter().map(|&t| i64::from(t)));
            }
            let t =
                Tensor::<2, Int>::from_data(TensorData::new(flat, [group.len(), seq + 1]), device);
            *sum += scalar(frozen.loss(t)) * group.len() as f64;
        }
    }
    dp.sum_f64(&mut sums)?;
    let mut per = std::collections::BTreeMap::new();
    let (mut num, mut den) = (0.0, 0.0);
    for (((c, &w), &n), sum) in corpora.iter().zip(weights).zip(&counts).zip(sums) {
        if n == 0 {
            continue;
        }
        let mean = sum / n as f64;
        per.insert(c.name.clone(), mean);
        num += w * mean;
        den += w;
    }
    let combined = (den > 0.0).then(|| num / den);
    Ok((per, combined))
}
