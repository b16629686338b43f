//! Supervised fine-tuning: cross-entropy on the assistant tokens, the mean over the trained
//! tokens of the whole global batch whichever rank computes a part.

use super::data::Encoded;
use super::examples::{batch_of, counts, rows_of, tokens};
use super::objective::ChatLoss;
use crate::dist::{my_slice, rounds};
use crate::train::harness::{Metrics, StepContext, StepOutcome, TrainResult};
use crate::train::{loss_into, position_nll_from};

/// The SFT loss.
pub struct Sft;

impl ChatLoss for Sft {
    type Example = Encoded;
    const NAME: &'static str = "sft";
    const ROWS_PER_EXAMPLE: usize = 1;

    fn step(&mut self, ctx: &StepContext, batch: &[&Encoded]) -> TrainResult<StepOutcome> {
        let model = ctx.model;
        let mut sink = ctx.dp.sink();
        // Token-weighted over the whole global batch, whichever rank computes a part.
        let total_trained: usize = counts(&rows_of(batch)).iter().sum();
        let (mut loss, mut read) = (0.0, 0);
        for group in my_slice(batch, ctx.rank(), ctx.world()).chunks(ctx.train.mbs) {
            let rows = rows_of(group);
            let n: usize = counts(&rows).iter().sum();
            read += tokens(&rows);
            let w = n as f64 / total_trained.max(1) as f64;
            let out = loss_into(model, &batch_of(&rows, ctx.device), ctx.plan, w, &mut sink)?;
            loss += out.loss * w;
        }
        Ok(StepOutcome::Share {
            loss,
            tokens: read,
            sums: Vec::new(),
        })
    }

    /// The mean loss per trained token over the validation examples.
    fn validate(&mut self, ctx: &StepContext, val: &[Encoded]) -> TrainResult<Metrics> {
        let chunk = ctx.plan.ce_chunk.unwrap_or(4096);
        let (mut sum, mut n) = (0.0, 0usize);
        let groups: Vec<&[Encoded]> = val.chunks(ctx.train.mbs.max(1)).collect();
        let source = ctx.dp.source();
        for g in rounds(groups.len(), ctx.rank(), ctx.world()) {
            let rows = g.map(|g| rows_of(&groups[g].iter().collect::<Vec<_>>()));
            let b = rows.as_ref().map(|rows| batch_of(rows, ctx.device));
            if let Some(nll) = position_nll_from(&source, ctx.model, b.as_ref(), chunk)? {
                sum += nll.iter().map(|&v| f64::from(v)).sum::<f64>();
            }
            n += rows.map_or(0, |rows| counts(&rows).iter().sum::<usize>());
        }
        let mut t = [sum, n as f64];
        ctx.dp.sum_f64(&mut t)?;
        let mut metrics = Metrics::new();
        metrics.insert("val_loss".into(), (t[0] / t[1].max(1.0)).into());
        Ok(metrics)
    }
}
