//! AdamW, global-norm gradient clipping and gradient accumulation, written out so that they
//! are exactly PyTorch's (`torch.optim.AdamW`, `torch.nn.utils.clip_grad_norm_`) and so that
//! the optimizer state can be saved by HF parameter name and restored into a reloaded model.
//! (burn 0.22 clips per tensor, not over all parameters, and keys its state by parameter ids
//! that a reloaded model does not share.)

use std::collections::HashMap;
use std::path::Path;

use burn::module::{ModuleMapper, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::DType;

use crate::checkpoint::safetensors::{self, Dtype};
use crate::checkpoint::StateFile;
use crate::error::CheckpointError;
use crate::model::params::{named_id_params, ParamValue};
use crate::model::{scalar, Llama};
use crate::train::step::{FullGrads, GradSink};

/// AdamW hyper-parameters (the learning rate comes per step from the schedule).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdamWSettings {
    #[serde(default = "default_beta1")]
    pub beta1: f64,
    #[serde(default = "default_beta2")]
    pub beta2: f64,
    #[serde(default = "default_eps")]
    pub eps: f64,
    #[serde(default = "default_weight_decay")]
    pub weight_decay: f64,
    /// Decay the RMSNorm weights too. Off by default, as in HF's Trainer (and so LLaMA-Factory),
    /// which decays only matrices.
    #[serde(default)]
    pub decay_norms: bool,
    /// Compensated (Kahan) updates: each parameter keeps the part of its past updates that its
    /// f32 value could not hold and adds it to the next update, so updates far below a weight's
    /// rounding step (LR 1e-9 on weights of magnitude 0.03 and more) still add up.
    #[serde(default)]
    pub compensated: bool,
}

/// Below this peak learning rate an AdamW step (about `lr` per weight) is less than 100
/// rounding steps of a weight near 1 (2^-23 ~ 1.2e-7), so plain f32 rounding takes 1 % or more
/// of it: the compensated update is on by default.
pub const COMPENSATE_BELOW_LR: f64 = 1e-5;

fn default_beta1() -> f64 {
    0.9
}
fn default_beta2() -> f64 {
    0.95
}
fn default_eps() -> f64 {
    1e-8
}
fn default_weight_decay() -> f64 {
    0.01
}

impl Default for AdamWSettings {
    fn default() -> Self {
        Self {
            beta1: default_beta1(),
            beta2: default_beta2(),
            eps: default_eps(),
            weight_decay: default_weight_decay(),
            decay_norms: false,
            compensated: false,
        }
    }
}

/// First and second moments of one parameter (or of a shard of it), flattened to `[1, numel]`,
/// and with compensated updates the part of past updates the parameter did not take up.
#[derive(Clone)]
pub struct Moments {
    pub exp_avg: Tensor<2>,
    pub exp_avg_sq: Tensor<2>,
    pub compensation: Option<Tensor<2>>,
}

impl Moments {
    /// Elements held.
    pub fn elements(&self) -> usize {
        let n = self.exp_avg.dims()[1];
        n * if self.compensation.is_some() { 3 } else { 2 }
    }

    /// The state tensors under their file suffixes (`exp_avg`, `exp_avg_sq`, `compensation`).
    pub fn named(&self) -> Vec<(&'static str, &Tensor<2>)> {
        let mut v = vec![("exp_avg", &self.exp_avg), ("exp_avg_sq", &self.exp_avg_sq)];
        if let Some(c) = &self.compensation {
            v.push(("compensation", c));
        }
        v
    }
}

/// The suffixes of one parameter's optimizer state in a checkpoint file.
pub(crate) const STATE_SUFFIXES: [&str; 3] = ["exp_avg", "exp_avg_sq", "compensation"];

/// One AdamW update of `p` (`[1, n]`, f32) with gradient `g` at optimizer step `step` (1-based),
/// from the moments `prev` (zeros when `None`): `torch.optim.AdamW`'s arithmetic, element by
/// element, so a parameter updated whole or in shards (ZeRO-1) gets the same values.
pub fn adamw_update(
    s: &AdamWSettings,
    step: u64,
    p: Tensor<2>,
    g: Tensor<2>,
    prev: Option<Moments>,
    lr: f64,
    decay: bool,
) -> (Tensor<2>, Moments) {
    let t = step as i32;
    let (b1, b2) = (s.beta1, s.beta2);
    let prev = prev.unwrap_or_else(|| Moments {
        exp_avg: p.zeros_like(),
        exp_avg_sq: p.zeros_like(),
        compensation: None,
    });
    let decay = decay && s.weight_decay != 0.0;
    // exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
    let exp_avg = prev.exp_avg.clone() + (g.clone() - prev.exp_avg).mul_scalar(1.0 - b1);
    let exp_avg_sq = prev.exp_avg_sq.mul_scalar(b2) + (g.clone() * g).mul_scalar(1.0 - b2);
    let bias1 = 1.0 - b1.powi(t);
    let bias2_sqrt = (1.0 - b2.powi(t)).sqrt();
    // denom = exp_avg_sq.sqrt() / sqrt(bias2) + eps
    let denom = exp_avg_sq
        .clone()
        .sqrt()
        .div_scalar(bias2_sqrt)
        .add_scalar(s.eps);
    let adam_step = (exp_avg.clone() / denom).mul_scalar(lr / bias1);
    let (p, compensation) = if s.compensated {
        // Kahan: y = wanted change - what earlier steps lost; the new value holds what it can
        // of y, and what it could not is carried to the next step.
        let wanted = if decay {
            p.clone().mul_scalar(-lr * s.weight_decay) - adam_step
        } else {
            adam_step.neg()
        };
        let y = match prev.compensation {
            Some(c) => wanted - c,
            None => wanted,
        };
        let next = p.clone() + y.clone();
        let lost = (next.clone() - p) - y;
        (next, Some(lost))
    } else {
        // torch: param.mul_(1 - lr * wd); param.addcdiv_(exp_avg, denom, -lr / bias1)
        let p = if decay {
            p.mul_scalar(1.0 - lr * s.weight_decay)
        } else {
            p
        };
        (p - adam_step, None)
    };
    (
        p,
        Moments {
            exp_avg,
            exp_avg_sq,
            compensation,
        },
    )
}

/// AdamW with its state.
pub struct AdamW {
    pub settings: AdamWSettings,
    /// Optimizer steps taken (PyTorch's `state["step"]`).
    pub step: u64,
    state: HashMap<ParamId, Moments>,
}

impl AdamW {
    pub fn new(settings: AdamWSettings) -> Self {
        Self {
            settings,
            step: 0,
            state: HashMap::new(),
        }
    }

    /// Apply one update with `grads` (already accumulated, and multiplied by `grad_scale`
    /// here: the clipping coefficient). Returns the updated model.
    pub fn update(
        &mut self,
        model: Llama,
        mut grads: GradientsParams,
        lr: f64,
        grad_scale: f64,
    ) -> Llama {
        self.step += 1;
        let decayed: std::collections::HashSet<ParamId> = model
            .params()
            .into_iter()
            .filter(|p| self.settings.decay_norms || matches!(p.value, ParamValue::D2(_)))
            .map(|p| p.id)
            .collect();
        let mut mapper = Updater {
            opt: self,
            grads: &mut grads,
            decayed: &decayed,
            lr,
            grad_scale,
        };
        model.map(&mut mapper)
    }

    /// One optimizer step: the global norm of `grads`, clipping to `max_norm`, the update.
    /// Returns the model and the norm before clipping; a non-finite norm is `Err(norm)` and no
    /// update is made (the caller stops; its last checkpoint holds good weights).
    pub fn step(
        &mut self,
        model: Llama,
        grads: GradientsParams,
        lr: f64,
        max_norm: Option<f64>,
    ) -> Result<(Llama, f64), f64> {
        let norm = global_norm(&model, &grads);
        if !norm.is_finite() {
            return Err(norm);
        }
        let model = self.update(model, grads, lr, clip_coefficient(norm, max_norm));
        Ok((model, norm))
    }

    fn update_one(
        &mut self,
        id: ParamId,
        p: Tensor<2>,
        g: Tensor<2>,
        lr: f64,
        decay: bool,
    ) -> Tensor<2> {
        let prev = self.state.remove(&id);
        let (p, moments) = adamw_update(&self.settings, self.step, p, g, prev, lr, decay);
        self.state.insert(id, moments);
        p
    }

    /// Elements of state held (both moments, and compensations, of every parameter updated so
    /// far).
    pub fn state_elements(&self) -> usize {
        self.state.values().map(Moments::elements).sum()
    }

    /// The moments (`exp_avg`, `exp_avg_sq`) of one parameter, flattened.
    pub fn moments_f32(&self, id: ParamId) -> Option<(Vec<f32>, Vec<f32>)> {
        let m = self.state.get(&id)?;
        let v = |t: &Tensor<2>| t.to_data().convert::<f32>().try_into_vec::<f32>().ok();
        Some((v(&m.exp_avg)?, v(&m.exp_avg_sq)?))
    }

    /// Write the state as safetensors (`<hf name>.exp_avg`, `<hf name>.exp_avg_sq` and, with
    /// compensated updates, `<hf name>.compensation`; f32).
    pub fn save(&self, model: &Llama, path: &Path) -> Result<(), CheckpointError> {
        let named = named_id_params(model);
        let mut tensors = Vec::new();
        let mut values: HashMap<String, (ParamId, &'static str)> = HashMap::new();
        for (name, p) in &named {
            if let Some(m) = self.state.get(&p.id) {
                let shape = match &p.value {
                    ParamValue::D1(t) => t.dims().to_vec(),
                    ParamValue::D2(t) => t.dims().to_vec(),
                };
                for (suffix, _) in m.named() {
                    let key = format!("{name}.{suffix}");
                    values.insert(key.clone(), (p.id, suffix));
                    tensors.push((key, shape.clone()));
                }
            }
        }
        let mut buf = Vec::new();
        safetensors::write(path, Dtype::F32, &tensors, |key| {
            let (id, suffix) = values[key];
            let named = self.state[&id].named();
            let t = named
                .iter()
                .find(|(s, _)| *s == suffix)
                .map(|(_, t)| *t)
                .expect("listed above");
            let v = t
                .to_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|e| CheckpointError::format(path, format!("{key}: {e:?}")))?;
            Dtype::F32.from_f32(&v, &mut buf);
            Ok(std::mem::take(&mut buf))
        })
    }

    /// Read a state written by [`AdamW::save`] for `model` (same architecture, any ids).
    pub fn load(&mut self, model: &Llama, path: &Path, step: u64) -> Result<(), CheckpointError> {
        let file = StateFile::open(path)?;
        self.state.clear();
        for (name, p) in named_id_params(model) {
            let numel = p.value.numel();
            let read = |suffix: &str| -> Result<Option<Tensor<2>>, CheckpointError> {
                let key = format!("{name}.{suffix}");
                let Some(v) = file.read(&key)? else {
                    return Ok(None);
                };
                if v.len() != numel {
                    return Err(CheckpointError::format(
                        path,
                        format!("{key}: {} values, the model has {numel}", v.len()),
                    ));
                }
                let device = match &p.value {
                    ParamValue::D1(t) => t.device(),
                    ParamValue::D2(t) => t.device(),
                };
                Ok(Some(Tensor::from_data(
                    TensorData::new(v, [1, numel]),
                    &device,
                )))
            };
            let pair = both_moments(read("exp_avg")?, read("exp_avg_sq")?, path, &name)?;
            if let Some((exp_avg, exp_avg_sq)) = pair {
                let moments = Moments {
                    exp_avg,
                    exp_avg_sq,
                    compensation: read("compensation")?,
                };
                self.state.insert(p.id, moments);
            }
        }
        self.step = step;
        Ok(())
    }
}

/// Visits every parameter of the model and replaces it by its updated value.
struct Updater<'a> {
    opt: &'a mut AdamW,
    grads: &'a mut GradientsParams,
    decayed: &'a std::collections::HashSet<ParamId>,
    lr: f64,
    grad_scale: f64,
}

impl ModuleMapper for Updater<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let require_grad = tensor.is_require_grad();
        let checkpointing = tensor.gradient_checkpointing_strategy();
        let dims = tensor.dims();
        let numel = dims.iter().product::<usize>();
        let inner = tensor.inner();
        let master = inner.dtype();
        let p = inner.cast(DType::F32).reshape([1, numel]);
        let g = grad.cast(DType::F32).reshape([1, numel]);
        let g = if self.grad_scale == 1.0 {
            g
        } else {
            g.mul_scalar(self.grad_scale)
        };
        let decay = self.decayed.contains(&id);
        let updated = self
            .opt
            .update_one(id, p, g, self.lr, decay)
            .reshape(dims)
            .cast(master);
        let mut t = Tensor::from_inner(updated);
        if let Some(strategy) = checkpointing {
            t = t.with_gradient_checkpointing_strategy(strategy);
        }
        if require_grad {
            t = t.require_grad();
        }
        Param::from_mapped_value(id, t, mapper)
    }
}

/// The global L2 norm of all gradients (one number over all parameters), as
/// `clip_grad_norm_` computes it.
///
/// Matrices are summed row by row first: burn-flex sums a tensor of 4M elements or more with
/// rayon in an order that depends on thread scheduling, so a busy machine would change the
/// last bits of the norm (and of the clipped update), and a resumed run would no longer repeat
/// the uninterrupted one exactly. Row sums, and the sum of fewer than 4M of them, are in a fixed order.
pub fn global_norm(model: &Llama, grads: &GradientsParams) -> f64 {
    let mut total: Option<Tensor<1>> = None;
    for p in model.params() {
        let sq = match p.value {
            ParamValue::D1(_) => grads
                .get::<1>(p.id)
                .map(|g| g.cast(DType::F32).square().sum()),
            ParamValue::D2(_) => grads
                .get::<2>(p.id)
                .map(|g| g.cast(DType::F32).square().sum_dim(1).sum()),
        };
        if let Some(sq) = sq {
            total = Some(match total {
                Some(t) => t + sq,
                None => sq,
            });
        }
    }
    total.map_or(0.0, |t| scalar(t).sqrt())
}

/// `clip_grad_norm_`'s factor: gradients are multiplied by `min(1, max_norm / (norm + 1e-6))`.
pub fn clip_coefficient(norm: f64, max_norm: Option<f64>) -> f64 {
    match max_norm {
        Some(m) if m > 0.0 => (m / (norm + 1e-6)).min(1.0),
        _ => 1.0,
    }
}

/// Add `weight * from` into `into`, parameter by parameter (gradient accumulation).
pub fn accumulate(
    model: &Llama,
    into: &mut GradientsParams,
    mut from: GradientsParams,
    weight: f64,
) {
    let mut full = FullGrads(std::mem::replace(into, GradientsParams::new()));
    // FullGrads makes no collective call: it cannot fail.
    let _ = full.take(&model.params(), &mut from, weight);
    *into = full.0;
}

/// A parameter's two moments as read from an optimizer file: both, or neither (a parameter
/// never updated); one alone is a damaged file.
pub(crate) fn both_moments<T>(
    exp_avg: Option<T>,
    exp_avg_sq: Option<T>,
    path: &Path,
    name: &str,
) -> Result<Option<(T, T)>, CheckpointError> {
    match (exp_avg, exp_avg_sq) {
        (Some(a), Some(b)) => Ok(Some((a, b))),
        (None, None) => Ok(None),
        _ => Err(CheckpointError::format(
            path,
            format!("{name}: one of exp_avg / exp_avg_sq is missing"),
        )),
    }
}
