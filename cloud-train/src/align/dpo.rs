//! Direct Preference Optimization on preference pairs: the policy's and the frozen starting
//! model's log-probabilities of the chosen and rejected responses, TRL's losses and metrics
//! (`train::dpo`).

use std::path::Path;

use burn::prelude::*;

use super::config::DpoSection;
use super::data::Encoded;
use super::examples::{batch_of, counts, rows_of, tokens};
use super::objective::ChatLoss;
use crate::dist::{my_slice, rounds, CommError, DataParallel};
use crate::model::Llama;
use crate::train::dpo::{self, DpoMetrics, PairLogps};
use crate::train::harness::{Metrics, StepContext, StepOutcome, TrainResult};
use crate::train::{loss_into_weighted, position_nll_from, ParamSource, TrainError};

/// The file in the run directory that keeps the reference log-probabilities.
pub const REFERENCE_LOGPS: &str = "reference_logps.json";

/// A preference pair, with the reference model's log-probabilities once computed.
#[derive(Debug, Clone)]
pub struct Pair {
    pub chosen: Encoded,
    pub rejected: Encoded,
    pub ref_logps: (f64, f64),
}

impl Pair {
    pub fn new(chosen: Encoded, rejected: Encoded) -> Self {
        Self {
            chosen,
            rejected,
            ref_logps: (0.0, 0.0),
        }
    }
}

/// The DPO loss with the `[dpo]` settings.
pub struct Dpo {
    pub settings: DpoSection,
    /// The global batch size (TRL's metrics are means over it).
    pub gbs: usize,
}

/// Token rows of the pairs: every chosen response, then every rejected one.
fn pair_rows(pairs: &[&Pair]) -> Vec<(Vec<u32>, Vec<bool>)> {
    let mut es: Vec<&Encoded> = pairs.iter().map(|p| &p.chosen).collect();
    es.extend(pairs.iter().map(|p| &p.rejected));
    rows_of(&es)
}

/// Response-token log-probability sums of each row of `rows` (`pair_rows`: chosen rows,
/// then rejected rows).
/// `None` rows: this rank has no group this round but takes part in ZeRO-3's gathers.
fn logps(
    source: &dyn ParamSource,
    model: &Llama,
    rows: Option<&[(Vec<u32>, Vec<bool>)]>,
    device: &Device,
    chunk: usize,
) -> Result<Option<Vec<f64>>, CommError> {
    let b = rows.map(|rows| batch_of(rows, device));
    let nll = position_nll_from(source, model, b.as_ref(), chunk)?;
    Ok(match (nll, rows, b) {
        (Some(nll), Some(rows), Some(b)) => Some(dpo::sequence_logps(
            &nll,
            b.ids.dims()[1],
            &counts(rows),
            false,
        )),
        _ => None,
    })
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

fn to_vec(m: DpoMetrics) -> [f64; 4] {
    [
        m.rewards_chosen,
        m.rewards_rejected,
        m.rewards_margins,
        m.rewards_accuracies,
    ]
}

/// The metrics from their sums over `n` pairs.
fn means(v: &[f64], n: f64) -> DpoMetrics {
    DpoMetrics {
        rewards_chosen: v[0] / n,
        rewards_rejected: v[1] / n,
        rewards_margins: v[2] / n,
        rewards_accuracies: v[3] / n,
    }
}

/// Copy the fields of `m` into `into`, names prefixed.
fn insert(into: &mut Metrics, m: DpoMetrics, prefix: &str) {
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(m) {
        for (k, v) in fields {
            into.insert(format!("{prefix}{k}"), v);
        }
    }
}

/// The reference log-probabilities of every pair, computed once with the starting model and
/// kept in the run directory (a resumed run no longer has that model).
fn reference_logps(
    dp: &DataParallel,
    model: &Llama,
    sets: [&mut Vec<Pair>; 2],
    out: &Path,
    fingerprint: &str,
    (mbs, chunk): (usize, usize),
    device: &Device,
) -> Result<(), TrainError> {
    let (source, comm) = (&dp.source(), dp.comm());
    let path = out.join(REFERENCE_LOGPS);
    let saved: Option<serde_json::Value> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .filter(|v: &serde_json::Value| v["fingerprint"] == fingerprint);
    let mut all = Vec::new();
    for (s, set) in sets.into_iter().enumerate() {
        let values: Vec<(f64, f64)> = match &saved {
            Some(v) => serde_json::from_value(v["sets"][s].clone())
                .map_err(|e| TrainError::resume(&path, e.to_string()))?,
            None => {
                // Groups dealt out to the ranks; the sum over ranks fills every value.
                let mut flat = vec![0.0; 2 * set.len()];
                let mbs = mbs.max(1);
                let groups: Vec<&[Pair]> = set.chunks(mbs).collect();
                for g in rounds(groups.len(), comm.rank(), comm.world()) {
                    let rows = g.map(|g| pair_rows(&groups[g].iter().collect::<Vec<_>>()));
                    let Some(l) = logps(source, model, rows.as_deref(), device, chunk)? else {
                        continue;
                    };
                    let (g, k) = (g.unwrap_or_default(), l.len() / 2);
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
            return Err(TrainError::resume(
                &path,
                format!("{} pairs, the data has {}", values.len(), set.len()),
            ));
        }
        for (p, v) in set.iter_mut().zip(&values) {
            p.ref_logps = *v;
        }
        all.push(values);
    }
    if saved.is_none() && comm.rank() == 0 {
        let json = serde_json::json!({"fingerprint": fingerprint, "sets": all});
        llama_spec::atomic::write_atomic(&path, format!("{json}\n").as_bytes())
            .map_err(TrainError::io(&path))?;
    }
    Ok(())
}

impl ChatLoss for Dpo {
    type Example = Pair;
    const NAME: &'static str = "dpo";
    const ROWS_PER_EXAMPLE: usize = 2;

    fn prepare(
        &mut self,
        ctx: &StepContext,
        sets: [&mut Vec<Pair>; 2],
        fingerprint: &str,
        resumed: bool,
    ) -> TrainResult {
        if resumed && !ctx.out.join(REFERENCE_LOGPS).exists() {
            return Err(TrainError::resume(
                ctx.out,
                format!("no {REFERENCE_LOGPS}; a DPO run cannot resume without the reference log-probabilities"),
            ));
        }
        let chunk = ctx.plan.ce_chunk.unwrap_or(4096);
        let geometry = (ctx.train.mbs, chunk);
        reference_logps(
            ctx.dp,
            ctx.model,
            sets,
            ctx.out,
            fingerprint,
            geometry,
            ctx.device,
        )
    }

    fn step(&mut self, ctx: &StepContext, batch: &[&Pair]) -> TrainResult<StepOutcome> {
        let (d, model) = (&self.settings, ctx.model);
        let mut sink = ctx.dp.sink();
        let mean = d.loss.length_normalized();
        let (mut loss, mut read, mut sums) = (0.0, 0, [0.0; 4]);
        for group in my_slice(batch, ctx.rank(), ctx.world()).chunks(ctx.train.mbs) {
            let rows = pair_rows(group);
            read += tokens(&rows);
            let b = batch_of(&rows, ctx.device);
            let seq = b.ids.dims()[1];
            let n = counts(&rows);
            let response: Vec<bool> = rows
                .iter()
                .flat_map(|(ids, m)| (0..seq).map(move |t| t + 1 < ids.len() && m[t + 1]))
                .collect();
            let mut result = None;
            let weights = |nll: &[f32]| {
                let policy = dpo::sequence_logps(nll, seq, &n, false);
                let pairs = pair_logps(group, &policy, &rows, mean);
                let o = dpo::dpo(&pairs, d.beta, d.loss, d.label_smoothing, self.gbs as f64);
                let dl: Vec<f64> = o.d_chosen.iter().chain(&o.d_rejected).copied().collect();
                let w = dpo::position_weights(&dl, seq, &response, &n, mean);
                result = Some(o);
                w
            };
            loss_into_weighted(model, &b, ctx.plan, weights, 1.0, &mut sink)?;
            if let Some(o) = result {
                loss += o.loss;
                for (s, v) in sums.iter_mut().zip(to_vec(o.sums)) {
                    *s += v;
                }
            }
        }
        Ok(StepOutcome::Share {
            loss,
            tokens: read,
            sums: sums.to_vec(),
        })
    }

    fn step_metrics(&mut self, sums: &[f64]) -> Metrics {
        let mut metrics = Metrics::new();
        insert(&mut metrics, means(sums, self.gbs as f64), "");
        metrics
    }

    /// The DPO loss and metrics over the validation pairs.
    fn validate(&mut self, ctx: &StepContext, val: &[Pair]) -> TrainResult<Metrics> {
        let d = &self.settings;
        let mean = d.loss.length_normalized();
        let chunk = ctx.plan.ce_chunk.unwrap_or(4096);
        // The loss, then the four metric sums.
        let mut t = [0.0; 5];
        let groups: Vec<&[Pair]> = val.chunks(ctx.train.mbs.max(1)).collect();
        let source = ctx.dp.source();
        for g in rounds(groups.len(), ctx.rank(), ctx.world()) {
            let refs: Vec<&Pair> = g.map_or(Vec::new(), |g| groups[g].iter().collect());
            let rows = g.map(|_| pair_rows(&refs));
            let Some(policy) = logps(&source, ctx.model, rows.as_deref(), ctx.device, chunk)?
            else {
                continue;
            };
            let rows = rows.unwrap_or_default();
            let pairs = pair_logps(&refs, &policy, &rows, mean);
            let o = dpo::dpo(&pairs, d.beta, d.loss, d.label_smoothing, val.len() as f64);
            t[0] += o.loss;
            for (s, v) in t[1..].iter_mut().zip(to_vec(o.sums)) {
                *s += v;
            }
        }
        ctx.dp.sum_f64(&mut t)?;
        let mut metrics = Metrics::new();
        metrics.insert("val_loss".into(), t[0].into());
        insert(&mut metrics, means(&t[1..], val.len() as f64), "val_");
        Ok(metrics)
    }
}
