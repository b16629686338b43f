//! The alignment objectives' common part: chat examples read once, shuffled per epoch, the
//! epoch as the data cursor; the loss itself ([`ChatLoss`]) is SFT's or DPO's.

use std::path::Path;

use serde_json::Value;

use super::config::AlignConfig;
use super::examples::{shuffled, Split};
use crate::train::harness::{Metrics, Objective, StepContext, StepOutcome, TrainResult};
use crate::train::state::TrainerState;
use crate::train::TrainError;

/// What differs between SFT and DPO: the example, its loss and its metrics.
pub trait ChatLoss {
    /// A tokenized conversation (SFT) or preference pair (DPO).
    type Example;
    const NAME: &'static str;
    /// Sequences per example (DPO: chosen and rejected).
    const ROWS_PER_EXAMPLE: usize;
    /// Once before the first step, with the starting model (DPO: reference log-probabilities
    /// of every pair, kept under `fingerprint` in the run directory).
    fn prepare(
        &mut self,
        _ctx: &StepContext,
        _sets: [&mut Vec<Self::Example>; 2],
        _fingerprint: &str,
        _resumed: bool,
    ) -> TrainResult {
        Ok(())
    }
    /// This rank's share of the global batch `batch` (every rank sees the whole batch).
    fn step(&mut self, ctx: &StepContext, batch: &[&Self::Example]) -> TrainResult<StepOutcome>;
    /// The loss's own fields of a step's metrics line, from its sums over ranks.
    fn step_metrics(&mut self, _sums: &[f64]) -> Metrics {
        Metrics::new()
    }
    /// Validation over `val` (dealt out to the ranks).
    fn validate(&mut self, ctx: &StepContext, val: &[Self::Example]) -> TrainResult<Metrics>;
}

/// SFT or DPO on chat data: examples, their order, and the loss `L`.
pub struct ChatObjective<'a, L: ChatLoss> {
    cfg: &'a AlignConfig,
    loss: L,
    data: Split<L::Example>,
    /// Examples drawn so far (the cursor; epochs are `next / train.len()`).
    next: u64,
    /// `tokenizer_config.json` for checkpoints when the model directory has none.
    tokenizer_config: Option<Vec<u8>>,
}

impl<'a, L: ChatLoss> ChatObjective<'a, L> {
    pub fn new(
        cfg: &'a AlignConfig,
        loss: L,
        data: Split<L::Example>,
        tokenizer_config: Option<Vec<u8>>,
    ) -> Self {
        Self {
            cfg,
            loss,
            data,
            next: 0,
            tokenizer_config,
        }
    }

    pub fn split(&self) -> &Split<L::Example> {
        &self.data
    }
}

impl<L: ChatLoss> Objective for ChatObjective<'_, L> {
    fn resume_key(&self) -> Value {
        let (c, t) = (&self.cfg.data, &self.cfg.train);
        serde_json::json!({
            "stage": L::NAME, "data": c.train, "max_len": c.max_len,
            "val_fraction": c.val_fraction, "seed": c.seed,
            "mbs": t.mbs, "gbs": t.gbs, "train_examples": self.data.train.len(),
        })
    }

    fn total_steps(&self) -> u64 {
        self.cfg.total_steps(self.data.train.len())
    }

    fn position(&self) -> (&'static str, f64) {
        ("examples", self.data.train.len() as f64)
    }

    fn micro_batch(&self) -> (usize, usize) {
        (L::ROWS_PER_EXAMPLE, self.cfg.data.max_len)
    }

    fn resume(&mut self, _: &Path, state: &TrainerState) -> Result<(), TrainError> {
        self.next = state.sequences;
        Ok(())
    }

    fn record(&self, state: &mut TrainerState) {
        state.sequences = self.next;
    }

    fn prepare(&mut self, ctx: &StepContext, resumed: bool) -> TrainResult {
        let fingerprint = self.resume_key().to_string();
        let sets = [&mut self.data.train, &mut self.data.val];
        self.loss.prepare(ctx, sets, &fingerprint, resumed)
    }

    fn step(&mut self, ctx: &StepContext) -> TrainResult<StepOutcome> {
        let (n, seed) = (self.data.train.len(), self.cfg.data.seed);
        let batch: Vec<&L::Example> = (self.next..self.next + ctx.train.gbs as u64)
            .map(|i| &self.data.train[shuffled(i, n, seed)])
            .collect();
        let outcome = self.loss.step(ctx, &batch)?;
        self.next += ctx.train.gbs as u64;
        Ok(outcome)
    }

    fn step_metrics(&mut self, sums: &[f64]) -> Metrics {
        let mut metrics = self.loss.step_metrics(sums);
        let epoch = self.next as f64 / self.data.train.len() as f64;
        metrics.insert("epoch".into(), epoch.into());
        metrics
    }

    fn validate(&mut self, ctx: &StepContext) -> TrainResult<Metrics> {
        if self.data.val.is_empty() {
            return Ok(Metrics::new());
        }
        self.loss.validate(ctx, &self.data.val)
    }

    fn checkpoint_files(&self) -> Vec<(String, Vec<u8>)> {
        self.tokenizer_config
            .iter()
            .map(|b| ("tokenizer_config.json".to_string(), b.clone()))
            .collect()
    }
}
