//! The CPT objective: causal-LM loss on fixed-length windows drawn from the corpora by the
//! ALMR mixer, validation loss per corpus and mixture-weighted, the mixer's position as the
//! data cursor.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::config::{CptConfig, Role};
use crate::data::{Mixer, MixerCorpus, TokenStore, TokenStream};
use crate::dist::{my_slice, rounds};
use crate::train::config::RunConfig;
use crate::train::harness::{
    self, Event, Metrics, Objective, RunSummary, StepContext, StepOutcome, TrainResult,
};
use crate::train::state::{Resume, TrainerState};
use crate::train::{loss_into, position_nll_from, Batch, TrainError};

struct Corpus {
    name: String,
    role: Role,
    train: TokenStream,
    val: TokenStream,
}

/// Continual pre-training on a mixture of token corpora.
pub struct CptObjective<'a> {
    cfg: &'a CptConfig,
    corpora: Vec<Corpus>,
    /// Each corpus's target fraction of the sequences.
    weights: Vec<f64>,
    mixer: Mixer,
    window: Vec<u32>,
    vocab: u32,
}

impl<'a> CptObjective<'a> {
    /// Open the corpora of `cfg` (all tokenized with one tokenizer) and set up the mixer.
    pub fn new(cfg: &'a CptConfig) -> Result<Self, TrainError> {
        let mut corpora = Vec::new();
        let mut tokenizer_sha: Option<(String, String)> = None;
        for c in &cfg.data.corpus {
            let store = TokenStore::open(&c.path)?;
            let sha = store.manifest.tokenizer_sha256.clone();
            match &tokenizer_sha {
                Some((first, other)) if *first != sha => {
                    return Err(TrainError::input(
                        format!("corpus {:?} ({})", c.name, c.path.display()),
                        format!("tokenized with another tokenizer than corpus {other:?}: prepare both with the model's tokenizer"),
                    ))
                }
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
        let weights = cfg.weights()?;
        let seq = cfg.data.seq_len;
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
        let mixer = Mixer::new(mixer_corpora, cfg.data.seed)?;
        Ok(Self {
            cfg,
            corpora,
            weights,
            mixer,
            window: Vec::with_capacity(seq + 1),
            vocab: u32::MAX,
        })
    }

    /// The realized fraction of additional-language sequences so far.
    pub fn realized_almr(&self) -> f64 {
        let n = self.mixer.drawn().max(1) as f64;
        self.mixer
            .counts()
            .iter()
            .zip(&self.corpora)
            .filter(|(_, c)| c.role == Role::Additional)
            .map(|(&k, _)| k as f64)
            .sum::<f64>()
            / n
    }
}

impl Objective for CptObjective<'_> {
    fn resume_key(&self) -> Value {
        self.cfg.resume_key()
    }

    fn total_steps(&self) -> u64 {
        self.cfg.total_steps()
    }

    fn position(&self) -> (&'static str, f64) {
        ("sequences drawn", self.mixer.drawn() as f64)
    }

    fn micro_batch(&self) -> (usize, usize) {
        (1, self.cfg.data.seq_len)
    }

    fn resume(&mut self, dir: &Path, state: &TrainerState) -> Result<(), TrainError> {
        self.mixer.fast_forward(state.sequences).map_err(|e| {
            TrainError::resume(
                dir,
                format!("replaying the data order: corpus {:?} ran out", e.name),
            )
        })?;
        if self.mixer.counts() != state.mixer_counts.as_slice() {
            return Err(TrainError::resume(
                dir,
                format!(
                    "the data order does not replay (counts {:?}, saved {:?}): were the corpora prepared again?",
                    self.mixer.counts(),
                    state.mixer_counts
                ),
            ));
        }
        Ok(())
    }

    fn record(&self, state: &mut TrainerState) {
        state.sequences = self.mixer.drawn();
        state.mixer_counts = self.mixer.counts().to_vec();
    }

    fn prepare(&mut self, ctx: &StepContext, _: bool) -> TrainResult {
        self.vocab = ctx.model.embed_tokens.val().dims()[0] as u32;
        Ok(())
    }

    fn step(&mut self, ctx: &StepContext) -> TrainResult<StepOutcome> {
        let model = ctx.model;
        let (seq, mbs, gbs) = (self.cfg.data.seq_len, ctx.train.mbs, ctx.train.gbs);
        // The global batch is the same stream of draws at any world size; this rank computes
        // its contiguous slice of `accumulation` micro-batches.
        let mut draws = Vec::with_capacity(gbs);
        for _ in 0..gbs {
            match self.mixer.next() {
                Ok(d) => draws.push(d),
                Err(e) => {
                    return Ok(StepOutcome::Exhausted(format!(
                        "corpus {:?} is exhausted after {} windows (on_exhausted = \"stop\")",
                        e.name, e.windows
                    )))
                }
            }
        }
        let micro_global = gbs / mbs;
        let mut sink = ctx.dp.sink();
        let mut loss = 0.0;
        let mut tokens = 0u64;
        for group in my_slice(&draws, ctx.rank(), ctx.world()).chunks(mbs) {
            let mut rows = Vec::with_capacity(mbs);
            for draw in group {
                let c = &self.corpora[draw.corpus];
                if !c.train.window(draw.window, seq, &mut self.window) {
                    return Err(TrainError::input(
                        format!("corpus {:?}", c.name),
                        format!("window {} out of range", draw.window),
                    ));
                }
                if let Some(&bad) = self.window.iter().find(|&&t| t >= self.vocab) {
                    return Err(TrainError::input(
                        format!("corpus {:?}", c.name),
                        format!("token id {bad} is beyond the model's vocabulary of {}: prepare it with the model's tokenizer", self.vocab),
                    ));
                }
                rows.push(self.window.clone());
            }
            tokens += (rows.len() * seq) as u64;
            let batch = Batch::from_windows(&rows, ctx.device);
            let w = 1.0 / micro_global as f64;
            loss += loss_into(model, &batch, ctx.plan, w, &mut sink)?.loss * w;
        }
        Ok(StepOutcome::Share {
            loss,
            tokens,
            sums: Vec::new(),
        })
    }

    fn step_metrics(&mut self, _: &[f64]) -> Metrics {
        let mut m = Metrics::new();
        m.insert("almr".into(), self.realized_almr().into());
        m
    }

    /// Mean validation loss per corpus over its first `val_sequences` windows, and their
    /// mixture-weighted combination. The windows are dealt out to the ranks and the sums
    /// all-reduced.
    fn validate(&mut self, ctx: &StepContext) -> TrainResult<Metrics> {
        let seq = self.cfg.data.seq_len;
        let source = ctx.dp.source();
        let (rank, world) = (ctx.rank(), ctx.world());
        let counts: Vec<u64> = self
            .corpora
            .iter()
            .map(|c| (self.cfg.data.val_sequences as u64).min(c.val.windows(seq)))
            .collect();
        let mut sums = vec![0.0; self.corpora.len()];
        for ((c, &n), sum) in self.corpora.iter().zip(&counts).zip(&mut sums) {
            // Groups of mbs windows, one per rank per round.
            let mbs = ctx.train.mbs.max(1) as u64;
            let groups = n.div_ceil(mbs) as usize;
            for g in rounds(groups, rank, world) {
                let batch = g.map(|g| {
                    let rows: Vec<Vec<u32>> = (g as u64 * mbs..((g as u64 + 1) * mbs).min(n))
                        .map(|i| {
                            c.val.window(i, seq, &mut self.window);
                            self.window.clone()
                        })
                        .collect();
                    Batch::from_windows(&rows, ctx.device)
                });
                let chunk = ctx.plan.ce_chunk.unwrap_or(4096);
                if let Some(nll) = position_nll_from(&source, ctx.model, batch.as_ref(), chunk)? {
                    // Each window's mean over its seq positions, summed.
                    *sum += nll.iter().map(|&v| f64::from(v)).sum::<f64>() / seq as f64;
                }
            }
        }
        ctx.dp.sum_f64(&mut sums)?;
        let mut per = BTreeMap::new();
        let (mut num, mut den) = (0.0, 0.0);
        for (((c, &w), &n), sum) in self
            .corpora
            .iter()
            .zip(&self.weights)
            .zip(&counts)
            .zip(sums)
        {
            if n == 0 {
                continue;
            }
            let mean = sum / n as f64;
            per.insert(c.name.clone(), mean);
            num += w * mean;
            den += w;
        }
        let mut metrics = Metrics::new();
        metrics.insert("val_loss".into(), serde_json::json!(per));
        if den > 0.0 {
            metrics.insert("val_loss_combined".into(), (num / den).into());
        }
        Ok(metrics)
    }
}

/// What a CPT run ended with.
#[derive(Debug, Clone)]
pub struct CptSummary {
    pub run: RunSummary,
    /// The realized fraction of additional-language sequences.
    pub almr: f64,
}

/// Run (or continue) a CPT config.
pub fn run(
    cfg: &CptConfig,
    resume: Resume,
    event: impl FnMut(Event),
) -> Result<CptSummary, TrainError> {
    let mut objective = CptObjective::new(cfg)?;
    let run = harness::run(cfg.sections(), &mut objective, resume, event)?;
    Ok(CptSummary {
        run,
        almr: objective.realized_almr(),
    })
}
