//! Direct Preference Optimization, as TRL's `DPOTrainer` defines it (`dpo_loss` with
//! `label_smoothing`, the sigmoid and IPO losses, and the `rewards/*` metrics), on per-sequence
//! response log-probabilities. The reference log-probabilities are numbers computed once before
//! training, so no second model is in memory while training.
//!
//! The loss is a function of the policy's per-sequence log-probabilities only, so its gradient
//! is `dL/dlogp` times the gradient of each `logp = -sum of nll over the response`:
//! [`position_weights`] turns `dL/dlogp` into the per-position weights that
//! `train::loss_and_grads_weighted` differentiates.

/// TRL's `loss_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DpoLoss {
    /// `-logsigmoid(beta * z)` (the original DPO).
    Sigmoid,
    /// `(z - 1 / (2 beta))^2` on length-normalized log-probabilities (Azar et al.).
    Ipo,
}

impl DpoLoss {
    /// IPO uses the mean log-probability per response token (TRL divides by the length).
    pub fn length_normalized(self) -> bool {
        self == DpoLoss::Ipo
    }
}

/// Log-probabilities of one preference pair (sums over response tokens, or means for IPO).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairLogps {
    pub policy_chosen: f64,
    pub policy_rejected: f64,
    pub ref_chosen: f64,
    pub ref_rejected: f64,
}

/// TRL's logged metrics, means over the pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct DpoMetrics {
    #[serde(rename = "rewards/chosen")]
    pub rewards_chosen: f64,
    #[serde(rename = "rewards/rejected")]
    pub rewards_rejected: f64,
    #[serde(rename = "rewards/margins")]
    pub rewards_margins: f64,
    #[serde(rename = "rewards/accuracies")]
    pub rewards_accuracies: f64,
}

/// The loss of a batch and its derivatives.
#[derive(Debug, Clone)]
pub struct DpoOut {
    /// Sum over the pairs of the per-pair loss, divided by `denom`.
    pub loss: f64,
    /// `dL/dlogp` of each pair's chosen and rejected response.
    pub d_chosen: Vec<f64>,
    pub d_rejected: Vec<f64>,
    /// Sums over the pairs (divide by the number of pairs for TRL's means).
    pub sums: DpoMetrics,
}

/// `log(sigmoid(x))`, stable for large |x|.
fn log_sigmoid(x: f64) -> f64 {
    -((-x).max(0.0) + (-x.abs()).exp().ln_1p())
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// The DPO loss of `pairs`, each weighted `1 / denom` (the number of pairs in the global batch,
/// so that micro-batches accumulate to TRL's mean).
pub fn dpo(
    pairs: &[PairLogps],
    beta: f64,
    kind: DpoLoss,
    label_smoothing: f64,
    denom: f64,
) -> DpoOut {
    let mut out = DpoOut {
        loss: 0.0,
        d_chosen: Vec::with_capacity(pairs.len()),
        d_rejected: Vec::with_capacity(pairs.len()),
        sums: DpoMetrics::default(),
    };
    for p in pairs {
        let z = (p.policy_chosen - p.policy_rejected) - (p.ref_chosen - p.ref_rejected);
        let (loss, d_z) = match kind {
            DpoLoss::Sigmoid => {
                let ls = label_smoothing;
                (
                    -log_sigmoid(beta * z) * (1.0 - ls) - log_sigmoid(-beta * z) * ls,
                    -(1.0 - ls) * beta * sigmoid(-beta * z) + ls * beta * sigmoid(beta * z),
                )
            }
            DpoLoss::Ipo => {
                let d = z - 1.0 / (2.0 * beta);
                (d * d, 2.0 * d)
            }
        };
        out.loss += loss / denom;
        out.d_chosen.push(d_z / denom);
        out.d_rejected.push(-d_z / denom);
        let chosen = beta * (p.policy_chosen - p.ref_chosen);
        let rejected = beta * (p.policy_rejected - p.ref_rejected);
        out.sums.rewards_chosen += chosen;
        out.sums.rewards_rejected += rejected;
        out.sums.rewards_margins += chosen - rejected;
        out.sums.rewards_accuracies += f64::from(u8::from(chosen > rejected));
    }
    out
}

/// Per-sequence log-probabilities from per-position nll (`[rows * seq]`, row-major, 0 where a
/// position is not a response token) and the number of response positions of each row.
/// Length-normalized (IPO) when `mean`.
pub fn sequence_logps(nll: &[f32], seq: usize, counts: &[usize], mean: bool) -> Vec<f64> {
    nll.chunks(seq)
        .zip(counts)
        .map(|(row, &n)| {
            let s = -row.iter().map(|&v| f64::from(v)).sum::<f64>();
            if mean {
                s / n.max(1) as f64
            } else {
                s
            }
        })
        .collect()
}

/// The per-position weights whose weighted nll has the gradient of the DPO loss: a response
/// position of row `r` gets `-dL/dlogp_r` (divided by the row's response length when the
/// log-probabilities are means); other positions 0. `response[t]` says which positions count.
pub fn position_weights(
    d_logp: &[f64],
    seq: usize,
    response: &[bool],
    counts: &[usize],
    mean: bool,
) -> Vec<f32> {
    response
        .iter()
        .enumerate()
        .map(|(t, &r)| {
            if !r {
                return 0.0;
            }
            let row = t / seq;
            let scale = if mean {
                1.0 / counts[row].max(1) as f64
            } else {
                1.0
            };
            (-d_logp[row] * scale) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivatives_match_finite_differences() {
        let p = PairLogps {
            policy_chosen: -12.0,
            policy_rejected: -11.0,
            ref_chosen: -12.5,
            ref_rejected: -10.0,
        };
        for (kind, ls) in [
            (DpoLoss::Sigmoid, 0.0),
            (DpoLoss::Sigmoid, 0.1),
            (DpoLoss::Ipo, 0.0),
        ] {
            let f = |c: f64, r: f64| {
                let q = PairLogps {
                    policy_chosen: c,
                    policy_rejected: r,
                    ..p
                };
                dpo(&[q], 0.3, kind, ls, 1.0).loss
            };
            let out = dpo(&[p], 0.3, kind, ls, 1.0);
            let h = 1e-6;
            let dc = (f(p.policy_chosen + h, p.policy_rejected)
                - f(p.policy_chosen - h, p.policy_rejected))
                / (2.0 * h);
            let dr = (f(p.policy_chosen, p.policy_rejected + h)
                - f(p.policy_chosen, p.policy_rejected - h))
                / (2.0 * h);
            assert!(
                (out.d_chosen[0] - dc).abs() < 1e-6,
                "{kind:?}: {} vs {dc}",
                out.d_chosen[0]
            );
            assert!(
                (out.d_rejected[0] - dr).abs() < 1e-6,
                "{kind:?}: {} vs {dr}",
                out.d_rejected[0]
            );
        }
        // Policy = reference: the sigmoid loss is ln 2, rewards 0, accuracy 0 (strictly greater).
        let same = PairLogps {
            policy_chosen: -3.0,
            policy_rejected: -4.0,
            ref_chosen: -3.0,
            ref_rejected: -4.0,
        };
        let o = dpo(&[same], 0.1, DpoLoss::Sigmoid, 0.0, 1.0);
        assert!((o.loss - std::f64::consts::LN_2).abs() < 1e-15);
        assert_eq!(o.sums.rewards_accuracies, 0.0);
        assert!(log_sigmoid(-800.0).is_finite() && log_sigmoid(800.0) == 0.0);
    }
}
