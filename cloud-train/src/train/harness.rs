//! The run loop every training objective shares: ranks and devices, the starting model or the
//! checkpoint to resume, the optimizer (replicated or ZeRO-sharded), then per step the
//! objective's share of the global batch, the sum over ranks, clipping and AdamW under the
//! schedule, metrics, validation, checkpoints and the final summary.
//!
//! An [`Objective`] brings only what differs between CPT, SFT and DPO: its data and cursor,
//! one step's loss and gradients, its metrics and its validation.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::prelude::*;
use serde_json::Value;

use super::config::{OutputSection, RunSections, TrainSection};
use super::error::TrainError;
use super::state::{self, MetricsWriter, Resume, TrainerState, METRICS, OPTIMIZER};
use super::{MemoryPlan, Schedule};
use crate::budget::{self, RunShape};
use crate::checkpoint;
use crate::device::Backend;
use crate::dist::{DataParallel, Ranks, StepError, Update, ZeroStage};
use crate::model::Llama;

/// One metrics line (`metrics.jsonl`): field name -> value.
pub type Metrics = serde_json::Map<String, Value>;

/// What the run reports as it goes (the CLI draws a progress bar from these). Only rank 0
/// reports steps and saves; every rank reports notes.
#[derive(Debug, Clone)]
pub enum Event {
    Start {
        first_step: u64,
        total_steps: u64,
        params: usize,
        resumed_from: Option<PathBuf>,
    },
    /// A finished step and its metrics line; `evaluated` when it includes validation.
    Step {
        step: u64,
        metrics: Metrics,
        evaluated: bool,
    },
    Saved(PathBuf),
    Note(String),
}

/// What an objective's [`Objective::step`] hands back.
pub enum StepOutcome {
    /// This rank's share of the step: its part of the loss (the parts sum to the step's loss),
    /// the tokens it read, and objective-specific sums (summed over ranks together with the
    /// loss and given back to [`Objective::step_metrics`]). Its part of the gradients went to
    /// `ctx.dp.sink()` (weighted so that the sum over ranks is the batch's gradient).
    Share {
        loss: f64,
        tokens: u64,
        sums: Vec<f64>,
    },
    /// The data ran out (every rank sees the same): the run ends after the last finished step.
    Exhausted(String),
}

/// What a step works with: the model, the device, the ranks and the run's settings.
pub struct StepContext<'a> {
    pub model: &'a Llama,
    pub device: &'a Device,
    pub dp: &'a DataParallel,
    pub train: &'a TrainSection,
    pub plan: &'a MemoryPlan,
    /// The run directory (for files an objective keeps there).
    pub out: &'a Path,
}

/// A result of a training step or run.
pub type TrainResult<T = ()> = Result<T, TrainError>;

impl StepContext<'_> {
    pub fn rank(&self) -> usize {
        self.dp.rank()
    }
    pub fn world(&self) -> usize {
        self.dp.world()
    }
}

/// A training objective: its data, its loss, its metrics.
pub trait Objective {
    /// What a resumed run must share with the run it continues (data, batch geometry).
    fn resume_key(&self) -> Value;
    /// Optimizer steps of the whole run.
    fn total_steps(&self) -> u64;
    /// The data position every rank must agree on, named (checked at start).
    fn position(&self) -> (&'static str, f64);
    /// Sequences per example and the longest sequence, in tokens (for the memory plan).
    fn micro_batch(&self) -> (usize, usize);
    /// Bring the data cursor to that of checkpoint `dir` (whose state is `state`).
    fn resume(&mut self, dir: &Path, state: &TrainerState) -> Result<(), TrainError>;
    /// Write the data cursor into the trainer state (after the start and each step).
    fn record(&self, state: &mut TrainerState);
    /// Once before the first step, with the model the run starts from.
    fn prepare(&mut self, _ctx: &StepContext, _resumed: bool) -> TrainResult {
        Ok(())
    }
    /// This rank's share of the next global batch.
    fn step(&mut self, ctx: &StepContext) -> TrainResult<StepOutcome>;
    /// The objective's fields of a step's metrics line, from its sums over ranks.
    fn step_metrics(&mut self, sums: &[f64]) -> Metrics;
    /// Validation fields (`val_loss`, ...) for the metrics line of an evaluation step.
    fn validate(&mut self, ctx: &StepContext) -> TrainResult<Metrics>;
    /// Files written into every checkpoint besides weights and state (a chat template).
    fn checkpoint_files(&self) -> Vec<(String, Vec<u8>)> {
        Vec::new()
    }
}

/// What a run ended with.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub first_step: u64,
    pub steps: u64,
    pub tokens: u64,
    pub first_loss: Option<f64>,
    pub last_loss: Option<f64>,
    /// The metrics line of the last step of this run.
    pub last_metrics: Metrics,
    /// The validation fields of the last evaluation of this run.
    pub last_validation: Metrics,
    pub tokens_per_s: f64,
    pub elapsed_s: f64,
    pub last_checkpoint: Option<PathBuf>,
    /// Why the run ended before its last step (a corpus with `on_exhausted = "stop"`).
    pub stopped: Option<String>,
    /// This process's rank (0 reports).
    pub rank: usize,
}

impl RunSummary {
    /// A number of the last validation (`val_loss_combined`, `val_loss`, ...).
    pub fn validation(&self, key: &str) -> Option<f64> {
        self.last_validation.get(key).and_then(Value::as_f64)
    }
    /// A number of the last step's metrics line.
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.last_metrics.get(key).and_then(Value::as_f64)
    }
}

/// This rank's device and collective (see `dist::Ranks`), each rank's start line reported,
/// and the event sink wrapped so that only rank 0 reports steps, saves and progress.
fn start_ranks(
    train: &TrainSection,
    mut event: impl FnMut(Event),
) -> Result<(Ranks, impl FnMut(Event)), TrainError> {
    let ranks = Ranks::start(train.backend, &train.dist()?)?;
    if let Some(b) = ranks.banner() {
        event(Event::Note(b));
    }
    if let Some(w) = train.tiny_lr_warning() {
        if ranks.comm.rank() == 0 {
            event(Event::Note(w));
        }
    }
    let rank = ranks.comm.rank();
    let event = move |e: Event| {
        if rank == 0 || matches!(e, Event::Note(_)) {
            event(e)
        }
    };
    Ok((ranks, event))
}

/// Refuse a run whose memory plan (`budget`) does not fit the device, with the plan's table.
/// A CPU rank is compared with the whole host's memory; set `device_mem_gib` where several
/// ranks share a host.
fn check_memory(
    train: &TrainSection,
    config: &llama_spec::LlamaConfig,
    (rows_per_example, seq_len): (usize, usize),
    (world, local_rank): (usize, usize),
    event: &mut impl FnMut(Event),
) -> TrainResult {
    if !train.memory_check {
        return Ok(());
    }
    let device_bytes = train
        .device_mem_gib
        .map(|g| (g * budget::GIB) as u64)
        .or_else(|| budget::device_memory(train.backend, local_rank));
    let Some(device_bytes) = device_bytes else {
        event(Event::Note(format!(
            "memory plan not checked: this build cannot read the {:?} device's memory; set [train] device_mem_gib",
            train.backend
        )));
        return Ok(());
    };
    let reserve = if train.backend == Backend::Flex {
        0
    } else {
        budget::GPU_RESERVE_BYTES
    };
    let shape = RunShape::of(train, rows_per_example, seq_len);
    let need = budget::budget(config, &shape, train.zero_stage, world, reserve).total();
    if need <= device_bytes {
        return Ok(());
    }
    Err(TrainError::DoesNotFit {
        message: format!(
            "ZeRO-{} over {world} ranks needs {:.1} GiB per device, the device has {:.1} GiB",
            train.zero_stage,
            need as f64 / budget::GIB,
            device_bytes as f64 / budget::GIB,
        ),
        table: budget::table(config, &shape, world, device_bytes, reserve, 1024),
    })
}

/// The trainer state and where the starting weights are: checkpoint `from` (resumed), else
/// `[model] path`, else none (a random init of `[model] config`).
fn starting_point(
    s: RunSections,
    objective: &mut dyn Objective,
    from: Option<&Path>,
    event: &mut impl FnMut(Event),
) -> Result<(Option<PathBuf>, TrainerState), TrainError> {
    let Some(dir) = from else {
        let st = TrainerState::fresh(objective.resume_key(), &s.output.save_dtype);
        return Ok((s.model.path.clone(), st));
    };
    let st = state::read_state(dir)?;
    if st.resume_key != objective.resume_key() {
        return Err(TrainError::resume(
            dir,
            format!(
                "made with other data or batch settings than this config:\n  checkpoint: {}\n  config:     {}\nuse the config of that run, or a new output dir",
                st.resume_key,
                objective.resume_key()
            ),
        ));
    }
    if st.weights_dtype != "f32" {
        event(Event::Note(format!(
            "resuming from {} weights: the continuation is close to, not bit-identical with, an uninterrupted run",
            st.weights_dtype
        )));
    }
    objective.resume(dir, &st)?;
    Ok((Some(dir.to_path_buf()), st))
}

/// The model the run's passes see and the data-parallel optimizer around it. Under ZeRO-3 from
/// a checkpoint each rank reads only its part of every tensor (the model is a shell from the
/// start); otherwise every rank loads (or initializes) the whole model first.
fn starting_model(
    s: RunSections,
    config: &llama_spec::LlamaConfig,
    weights: Option<&Path>,
    comm: Box<dyn crate::dist::Collective>,
    device: &Device,
) -> Result<(Llama, DataParallel), TrainError> {
    let zero = s.train.dist()?.zero;
    if let (Some(dir), ZeroStage::ShardedParams) = (weights, zero) {
        let reader = checkpoint::PartReader::open(dir)?;
        let shell = checkpoint::shell(config, device).train();
        let dp = DataParallel::with_parts(
            comm,
            s.train.adamw(),
            config,
            &shell,
            device,
            |slot, range| reader.part(&slot.name, &slot.dims, range),
        )?;
        return Ok((shell, dp));
    }
    let model = match weights {
        Some(dir) => checkpoint::load(dir, device)?.0,
        None => state::starting_model(s.model, device)?.0,
    }
    .train();
    let mut dp = DataParallel::new(comm, s.train.adamw(), zero, &model, device);
    // ZeRO-3 from a random init: from here on this rank keeps its part of each parameter.
    let model = dp.shard(model)?;
    Ok((model, dp))
}

/// Run (or continue) `objective` under the `s` sections.
pub fn run(
    s: RunSections,
    objective: &mut dyn Objective,
    resume: Resume,
    event: impl FnMut(Event),
) -> Result<RunSummary, TrainError> {
    let (
        Ranks {
            device,
            comm,
            launch,
        },
        mut event,
    ) = start_ranks(s.train, event)?;
    let rank = comm.rank();
    let out = &s.output.dir;
    std::fs::create_dir_all(out).map_err(TrainError::io(out))?;
    let from = state::resume_from(out, resume)?;
    let config = state::model_config(s.model, from.as_deref())?;
    check_memory(
        s.train,
        &config,
        objective.micro_batch(),
        (comm.world(), launch.local_rank),
        &mut event,
    )?;
    let (weights, mut trainer) = starting_point(s, objective, from.as_deref(), &mut event)?;
    objective.record(&mut trainer);
    if rank == 0 {
        state::truncate_metrics(&out.join(METRICS), trainer.step)
            .map_err(TrainError::io(out.join(METRICS)))?;
    }
    let params = budget::ParamCounts::of(&config).total as usize;
    let (mut model, mut dp) = starting_model(s, &config, weights.as_deref(), comm, &device)?;
    if let Some(dir) = &from {
        let state = if checkpoint::shards::is_sharded(dir) {
            dir.clone()
        } else {
            dir.join(OPTIMIZER)
        };
        dp.load_optimizer(&model, &state, trainer.adam_step)?;
    }
    // gbs = mbs x accumulation x world; each rank takes its gbs / world of a step.
    let (gbs, mbs) = (s.train.gbs, s.train.mbs);
    dp.accumulation(gbs, mbs)?;
    // Every rank must start from the same model, data position and batch geometry.
    let (position, at) = objective.position();
    dp.check_same(
        &format!("(parameters, step, {position}, gbs, mbs)"),
        &[
            params as f64,
            trainer.step as f64,
            at,
            gbs as f64,
            mbs as f64,
        ],
    )?;
    let fixed = Fixed {
        device: &device,
        train: s.train,
        plan: s.train.memory_plan(),
        out,
    };
    objective.prepare(&fixed.with(&model, &dp), from.is_some())?;
    let total = objective.total_steps();
    let schedule = Schedule {
        peak: s.train.lr,
        min_lr: s.train.min_lr,
        warmup: s.train.warmup(total),
        total,
        decay: s.train.schedule,
    };
    trainer.schedule = serde_json::json!({
        "peak": schedule.peak, "min_lr": schedule.min_lr, "warmup": schedule.warmup,
        "total": schedule.total, "decay": schedule.decay,
    });
    let save_opts = state::save_options(s.model, s.output, objective.checkpoint_files())?;
    let mut metrics_file = if rank == 0 {
        Some(MetricsWriter::open(&out.join(METRICS))?)
    } else {
        None
    };
    event(Event::Start {
        first_step: trainer.step,
        total_steps: total,
        params,
        resumed_from: from.clone(),
    });

    let run_start = Instant::now();
    let elapsed_before = trainer.elapsed_s;
    let mut summary = RunSummary {
        first_step: trainer.step,
        steps: trainer.step,
        last_checkpoint: from.clone(),
        rank,
        ..RunSummary::default()
    };
    let mut tokens_run = 0u64;
    let mut saved_at = trainer.step;
    while trainer.step < total {
        let t0 = Instant::now();
        let lr = schedule.lr(trainer.step);
        let (loss, tokens, sums) = match objective.step(&fixed.with(&model, &dp))? {
            StepOutcome::Share { loss, tokens, sums } => (loss, tokens, sums),
            StepOutcome::Exhausted(why) => {
                summary.stopped = Some(why);
                break;
            }
        };
        // One collective for the loss, the tokens and the objective's sums.
        let mut totals = vec![loss, tokens as f64];
        totals.extend(sums);
        dp.sum_f64(&mut totals)?;
        let (loss, tokens) = (totals[0], totals[1] as u64);
        let diverged = |what: String| TrainError::Diverged {
            step: trainer.step + 1,
            what,
            last_checkpoint: summary.last_checkpoint.clone(),
        };
        let norm;
        (model, norm) = dp
            .step(
                model,
                Update {
                    lr,
                    max_norm: s.train.max_grad_norm,
                },
            )
            .map_err(|e| match e {
                StepError::Diverged(n) => diverged(format!("gradient norm {n}")),
                StepError::Comm(e) => TrainError::Comm(e),
            })?;
        if !loss.is_finite() {
            return Err(diverged(format!("loss {loss}")));
        }
        trainer.step += 1;
        trainer.tokens += tokens;
        trainer.adam_step = dp.adam_step();
        objective.record(&mut trainer);
        tokens_run += tokens;
        let tokens_per_s = tokens as f64 / t0.elapsed().as_secs_f64();
        trainer.elapsed_s = elapsed_before + run_start.elapsed().as_secs_f64();
        let mut line = Metrics::new();
        line.insert("step".into(), trainer.step.into());
        line.insert("tokens".into(), trainer.tokens.into());
        line.insert("lr".into(), lr.into());
        line.insert("loss".into(), loss.into());
        line.insert("grad_norm".into(), norm.into());
        line.insert("tokens_per_s".into(), tokens_per_s.into());
        line.insert("elapsed_s".into(), trainer.elapsed_s.into());
        if let Some(p) = s.train.peak_tflops {
            let mfu = 6.0 * params as f64 * tokens_per_s / (p * 1e12);
            line.insert("mfu".into(), mfu.into());
        }
        line.extend(objective.step_metrics(&totals[2..]));
        let last = trainer.step == total;
        let eval_due = last || (s.output.eval_every > 0 && trainer.step % s.output.eval_every == 0);
        if eval_due {
            let val = objective.validate(&fixed.with(&model, &dp))?;
            line.extend(val.clone());
            summary.last_validation = val;
        }
        if let Some(f) = &mut metrics_file {
            f.write(&Value::Object(line.clone()))?;
        }
        summary.first_loss.get_or_insert(loss);
        summary.last_loss = Some(loss);
        summary.last_metrics = line.clone();
        event(Event::Step {
            step: trainer.step,
            metrics: line,
            evaluated: eval_due,
        });
        if last || trainer.step % s.output.save_every == 0 {
            let dir = save(&model, &config, &dp, &trainer, s.output, &save_opts)?;
            saved_at = trainer.step;
            summary.last_checkpoint = Some(dir.clone());
            event(Event::Saved(dir));
        }
    }
    if saved_at != trainer.step {
        let dir = save(&model, &config, &dp, &trainer, s.output, &save_opts)?;
        summary.last_checkpoint = Some(dir.clone());
        event(Event::Saved(dir));
    }
    event(Event::Note(held_line(&dp)));
    summary.steps = trainer.step;
    summary.tokens = trainer.tokens;
    summary.elapsed_s = trainer.elapsed_s;
    summary.tokens_per_s = tokens_run as f64 / run_start.elapsed().as_secs_f64().max(1e-9);
    Ok(summary)
}

/// What this rank held of the model's state (values, not bytes: the dtypes vary by stage), and
/// its peak resident memory.
fn held_line(dp: &DataParallel) -> String {
    let h = dp.held();
    let rss = budget::peak_rss_bytes().map_or("unknown".into(), |b| {
        format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64)
    });
    let gathered = if h.gathered > 0 {
        format!(
            ", and gathered at most {} parameter values for a pass",
            h.gathered
        )
    } else {
        String::new()
    };
    format!(
        "rank {} of {} held {} parameter + {} gradient (at most) + {} optimizer values = {}{gathered}; peak RSS {rss}",
        dp.rank(),
        dp.world(),
        h.params,
        h.grads_peak,
        h.optimizer,
        h.total(),
    )
}

/// What stays the same through a run, for each call's [`StepContext`].
struct Fixed<'a> {
    device: &'a Device,
    train: &'a TrainSection,
    plan: MemoryPlan,
    out: &'a Path,
}

impl Fixed<'_> {
    fn with<'b>(&'b self, model: &'b Llama, dp: &'b DataParallel) -> StepContext<'b> {
        StepContext {
            model,
            device: self.device,
            dp,
            train: self.train,
            plan: &self.plan,
            out: self.out,
        }
    }
}

fn save(
    model: &Llama,
    config: &llama_spec::LlamaConfig,
    dp: &DataParallel,
    trainer: &TrainerState,
    output: &OutputSection,
    opts: &checkpoint::SaveOptions,
) -> Result<PathBuf, TrainError> {
    state::save_ranked(
        model,
        config,
        dp,
        trainer,
        &output.dir,
        opts,
        output.keep_last,
    )
}
