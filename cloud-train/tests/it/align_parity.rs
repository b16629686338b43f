//! SFT (masked causal-LM loss) and DPO (TRL's sigmoid and IPO losses, rewards metrics) against
//! transformers + torch code following TRL (fixtures: tests/fixtures/make_align_fixtures.py):
//! losses within 3e-7 relative, reward metrics within 2e-5, gradients within 4e-6 relative;
//! and the masking property.

use crate::common;

use burn::module::Module;
use cloud_train::model::params::named_id_params;
use cloud_train::train::dpo::{self, DpoLoss, PairLogps};
use cloud_train::train::{loss_and_grads, loss_and_grads_weighted, Batch, LossGrads, MemoryPlan};
use cloud_train::{checkpoint, Llama};
use common::{device, fixture, npy_f32, rel_err};

fn reference() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("align").join("reference.json")).expect("json");
    serde_json::from_str(&text).expect("json")
}

fn rows(v: &serde_json::Value) -> Vec<Vec<i64>> {
    v.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_i64().expect("int"))
                .collect()
        })
        .collect()
}

/// (ids, mask) per row from HF-style ids and labels (-100 = not trained).
fn examples(ids: &serde_json::Value, labels: &serde_json::Value) -> Vec<(Vec<u32>, Vec<bool>)> {
    rows(ids)
        .into_iter()
        .zip(rows(labels))
        .map(|(i, l)| {
            (
                i.iter().map(|&x| x as u32).collect(),
                l.iter().map(|&x| x >= 0).collect(),
            )
        })
        .collect()
}

fn batch(ex: &[(Vec<u32>, Vec<bool>)]) -> Batch {
    let r: Vec<(&[u32], &[u32], &[bool])> = ex
        .iter()
        .map(|(i, m)| (i.as_slice(), i.as_slice(), m.as_slice()))
        .collect();
    Batch::masked(&r, 0, &device())
}

fn model() -> Llama {
    checkpoint::load(fixture("gqa_llama3"), &device())
        .expect("load")
        .0
        .train()
}

fn check_grads(model: &Llama, out: &LossGrads, tag: &str, names: &[String]) {
    for (name, p) in named_id_params(model) {
        if !names.contains(&name) {
            continue;
        }
        let got = match &p.value {
            cloud_train::model::params::ParamValue::D1(_) => {
                out.grads.get::<1>(p.id).map(common::to_vec)
            }
            cloud_train::model::params::ParamValue::D2(_) => {
                out.grads.get::<2>(p.id).map(common::to_vec)
            }
        }
        .expect("gradient");
        let (want, _) = npy_f32(fixture("align").join(format!("grad.{tag}.{name}.npy")));
        let err = rel_err(&got, &want);
        println!("{tag} {name}: grad rel err {err:.2e}");
        // Observed: at most 1.0e-6 (IPO, the embedding).
        assert!(err < 4e-6, "{tag} {name}: {err}");
    }
}

fn grad_names(r: &serde_json::Value) -> Vec<String> {
    r["grads"]
        .as_array()
        .expect("grads")
        .iter()
        .map(|v| v.as_str().expect("name").to_string())
        .collect()
}

#[test]
fn sft_masked_loss_and_gradients_match_transformers() {
    let r = reference();
    let ex = examples(&r["sft"]["ids"], &r["sft"]["labels"]);
    let model = model();
    for plan in [
        MemoryPlan::default(),
        MemoryPlan {
            ce_chunk: Some(5),
            checkpoint_layers: true,
            ..MemoryPlan::default()
        },
    ] {
        let out = loss_and_grads(&model, &batch(&ex), &plan);
        let want = r["sft"]["loss"].as_f64().expect("loss");
        println!(
            "sft loss {} vs {want} (rel {:.1e})",
            out.loss,
            (out.loss - want).abs() / want
        );
        // Observed: 6.7e-8 relative.
        assert!(
            (out.loss - want).abs() < 3e-7 * want,
            "{} vs {want}",
            out.loss
        );
        check_grads(&model, &out, "sft", &grad_names(&r));
    }
}

#[test]
fn masked_labels_never_matter_response_labels_do() {
    let r = reference();
    let ex = examples(&r["sft"]["ids"], &r["sft"]["labels"]);
    let model = model().valid();
    let loss = |labels: &[Vec<u32>]| {
        let rows: Vec<(&[u32], &[u32], &[bool])> = ex
            .iter()
            .zip(labels)
            .map(|((i, m), l)| (i.as_slice(), l.as_slice(), m.as_slice()))
            .collect();
        let b = Batch::masked(&rows, 0, &device());
        let logits = model.forward(b.ids.clone());
        let [bs, s, v] = logits.dims();
        let lp = burn::tensor::activation::log_softmax(logits.reshape([bs * s, v]), 1);
        let t = b.targets.clone().reshape([bs * s]);
        let keep = t.clone().greater_equal_elem(0).float();
        let picked = lp
            .gather(1, t.clamp_min(0).reshape([bs * s, 1]))
            .reshape([bs * s]);
        cloud_train::model::scalar((picked * keep.clone()).sum().neg() / keep.sum())
    };
    let base: Vec<Vec<u32>> = ex.iter().map(|(i, _)| i.clone()).collect();
    let l0 = loss(&base);
    for (row, (ids, mask)) in ex.iter().enumerate() {
        for t in 1..ids.len() {
            let mut changed = base.clone();
            changed[row][t] = (ids[t] + 17) % 256;
            let l = loss(&changed);
            if mask[t] {
                assert!(
                    (l - l0).abs() > 1e-6,
                    "row {row} pos {t}: a response label must count"
                );
            } else {
                assert_eq!(
                    l, l0,
                    "row {row} pos {t}: a prompt/padding label changed the loss"
                );
            }
        }
    }
}

#[test]
fn dpo_sigmoid_and_ipo_match_trl() {
    let r = reference();
    let d = &r["dpo_batch"];
    let ex = examples(&d["ids"], &d["labels"]);
    let k = d["pairs"].as_u64().expect("pairs") as usize;
    let ref_logps: Vec<f64> = d["ref_logps"]
        .as_array()
        .expect("ref")
        .iter()
        .map(|v| v.as_f64().expect("f"))
        .collect();
    let counts: Vec<usize> = ex
        .iter()
        .map(|(_, m)| m.iter().filter(|&&x| x).count())
        .collect();
    let model = model();
    let b = batch(&ex);
    let seq = b.ids.dims()[1];
    // Which positions predict a response token (the targets that are not IGNORE).
    let response: Vec<bool> = common::to_vec(b.targets.clone().float())
        .iter()
        .map(|&t| t >= 0.0)
        .collect();
    for (tag, kind) in [("sigmoid", DpoLoss::Sigmoid), ("ipo", DpoLoss::Ipo)] {
        let want = &r[tag];
        let beta = want["beta"].as_f64().expect("beta");
        let mean = kind.length_normalized();
        let mut metrics = None;
        let mut policy = Vec::new();
        for plan in [
            MemoryPlan::default(),
            MemoryPlan {
                ce_chunk: Some(7),
                ..MemoryPlan::default()
            },
        ] {
            let out = loss_and_grads_weighted(&model, &b, &plan, |nll| {
                let sums = dpo::sequence_logps(nll, seq, &counts, false);
                policy = sums.clone();
                let logps = dpo::sequence_logps(nll, seq, &counts, mean);
                let refs: Vec<f64> = ref_logps
                    .iter()
                    .zip(&counts)
                    .map(|(&l, &n)| if mean { l / n as f64 } else { l })
                    .collect();
                let pairs: Vec<PairLogps> = (0..k)
                    .map(|i| PairLogps {
                        policy_chosen: logps[i],
                        policy_rejected: logps[k + i],
                        ref_chosen: refs[i],
                        ref_rejected: refs[k + i],
                    })
                    .collect();
                let o = dpo::dpo(&pairs, beta, kind, 0.0, k as f64);
                let d_logp: Vec<f64> = o.d_chosen.iter().chain(&o.d_rejected).copied().collect();
                metrics = Some(o);
                dpo::position_weights(&d_logp, seq, &response, &counts, mean)
            });
            let o = metrics.clone().expect("weights called");
            let want_policy: Vec<f64> = want["policy_logps"]
                .as_array()
                .expect("p")
                .iter()
                .map(|v| v.as_f64().expect("f"))
                .collect();
            for (a, w) in policy.iter().zip(&want_policy) {
                println!(
                    "{tag}: policy logp {a} vs {w} (rel {:.1e})",
                    (a - w).abs() / w.abs().max(1.0)
                );
                // Observed: 6.6e-8 relative.
                assert!(
                    (a - w).abs() < 3e-7 * w.abs().max(1.0),
                    "{tag}: policy logp {a} vs {w}"
                );
            }
            let wl = want["loss"].as_f64().expect("loss");
            println!(
                "{tag}: loss {} vs {wl} (rel {:.1e})",
                o.loss,
                (o.loss - wl).abs() / wl.abs().max(1e-3)
            );
            // Observed: 5.0e-8 relative.
            assert!(
                (o.loss - wl).abs() < 3e-7 * wl.abs().max(1e-3),
                "{tag}: loss {} vs {wl}",
                o.loss
            );
            let n = k as f64;
            for (key, got) in [
                ("rewards/chosen", o.sums.rewards_chosen / n),
                ("rewards/rejected", o.sums.rewards_rejected / n),
                ("rewards/margins", o.sums.rewards_margins / n),
                ("rewards/accuracies", o.sums.rewards_accuracies / n),
            ] {
                let w = want[key].as_f64().expect(key);
                println!(
                    "{tag} {key}: {got} vs {w} (rel {:.1e})",
                    (got - w).abs() / w.abs().max(1e-2)
                );
                // Observed: 5.5e-6 relative (differences of small f32 log-probabilities).
                assert!(
                    (got - w).abs() < 2e-5 * w.abs().max(1e-2),
                    "{tag} {key}: {got} vs {w}"
                );
            }
            check_grads(&model, &out, tag, &grad_names(&r));
        }
    }
}
