//! The model's parameters by HF name and by id: for saving, for gradient lookups, and for the
//! segmented backward that accumulates gradients block by block.

use burn::module::{Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Gradients;
use llama_spec::names::{LayerTensor, TensorName};

use super::{Block, Llama};

/// Tensor values that cannot be read as f32.
#[derive(Debug, Clone, thiserror::Error)]
#[error("tensor data: {0}")]
pub struct TensorDataError(pub String);

/// A parameter's current value, 1-D (norms) or 2-D (matrices).
#[derive(Debug, Clone)]
pub enum ParamValue {
    D1(Tensor<1>),
    D2(Tensor<2>),
}

impl ParamValue {
    pub fn numel(&self) -> usize {
        match self {
            ParamValue::D1(t) => t.dims()[0],
            ParamValue::D2(t) => t.dims().iter().product(),
        }
    }

    /// Row-major f32 values.
    pub fn to_f32(&self) -> Result<Vec<f32>, TensorDataError> {
        let data = match self {
            ParamValue::D1(t) => t.to_data(),
            ParamValue::D2(t) => t.to_data(),
        };
        data.convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| TensorDataError(format!("{e:?}")))
    }

    /// This parameter's gradient after a backward pass, as row-major f32 values.
    pub fn grad_f32(&self, grads: &Gradients) -> Option<Vec<f32>> {
        let data = match self {
            ParamValue::D1(t) => t.grad(grads)?.into_data(),
            ParamValue::D2(t) => t.grad(grads)?.into_data(),
        };
        data.convert::<f32>().try_into_vec::<f32>().ok()
    }
}

/// The model's parameters by HF name, in HF order.
pub fn named_params(model: &Llama) -> Vec<(String, ParamValue)> {
    named_id_params(model)
        .into_iter()
        .map(|(n, p)| (n, p.value))
        .collect()
}

/// The model's parameters with their ids, by HF name, in HF order (a tied head appears once,
/// as the embedding).
pub fn named_id_params(model: &Llama) -> Vec<(String, IdParam)> {
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        IdParam::two(&model.embed_tokens),
    )];
    for (i, b) in model.layers.iter().enumerate() {
        let i = i as u32;
        let name = |t| TensorName::Layer(i, t).hf().unwrap_or_default();
        out.extend([
            (
                name(LayerTensor::AttnNorm),
                IdParam::one(&b.input_layernorm),
            ),
            (name(LayerTensor::AttnQ), IdParam::two(&b.q_proj)),
            (name(LayerTensor::AttnK), IdParam::two(&b.k_proj)),
            (name(LayerTensor::AttnV), IdParam::two(&b.v_proj)),
            (name(LayerTensor::AttnOutput), IdParam::two(&b.o_proj)),
            (
                name(LayerTensor::FfnNorm),
                IdParam::one(&b.post_attention_layernorm),
            ),
            (name(LayerTensor::FfnGate), IdParam::two(&b.gate_proj)),
            (name(LayerTensor::FfnUp), IdParam::two(&b.up_proj)),
            (name(LayerTensor::FfnDown), IdParam::two(&b.down_proj)),
        ]);
    }
    out.push(("model.norm.weight".to_string(), IdParam::one(&model.norm)));
    if let Some(h) = &model.lm_head {
        out.push(("lm_head.weight".to_string(), IdParam::two(h)));
    }
    out
}

/// Add `grad` to the gradient already recorded for `id` (tied weights get two contributions).
fn accumulate<const D: usize>(into: &mut GradientsParams, id: ParamId, grad: Tensor<D>) {
    let total = match into.remove::<D>(id) {
        Some(prev) => prev + grad,
        None => grad,
    };
    into.register(id, total);
}

/// Add a gradient computed outside the tape (e.g. the fused cross-entropy's head gradient).
pub fn absorb_value<const D: usize>(into: &mut GradientsParams, id: ParamId, grad: Tensor<D>) {
    accumulate(into, id, grad.inner());
}

/// A parameter with its id, for gradient bookkeeping.
#[derive(Debug, Clone)]
pub struct IdParam {
    pub id: ParamId,
    pub value: ParamValue,
}

impl IdParam {
    pub fn one(p: &Param<Tensor<1>>) -> Self {
        Self {
            id: p.id,
            value: ParamValue::D1(p.val()),
        }
    }

    pub fn two(p: &Param<Tensor<2>>) -> Self {
        Self {
            id: p.id,
            value: ParamValue::D2(p.val()),
        }
    }
}

/// Move the gradients of `params` found in `grads` into `into`, adding to earlier ones.
pub fn absorb(into: &mut GradientsParams, params: &[IdParam], grads: &Gradients) {
    for p in params {
        match &p.value {
            ParamValue::D1(t) => {
                if let Some(g) = t.grad(grads) {
                    accumulate(into, p.id, g);
                }
            }
            ParamValue::D2(t) => {
                if let Some(g) = t.grad(grads) {
                    accumulate(into, p.id, g);
                }
            }
        }
    }
}

impl Block {
    /// The input-side parameters: input norm and the Q/K/V projections.
    pub fn qkv_params(&self) -> Vec<IdParam> {
        vec![
            IdParam::one(&self.input_layernorm),
            IdParam::two(&self.q_proj),
            IdParam::two(&self.k_proj),
            IdParam::two(&self.v_proj),
        ]
    }

    /// The output-side parameters: output projection, post-attention norm and the MLP.
    pub fn out_params(&self) -> Vec<IdParam> {
        vec![
            IdParam::two(&self.o_proj),
            IdParam::one(&self.post_attention_layernorm),
            IdParam::two(&self.gate_proj),
            IdParam::two(&self.up_proj),
            IdParam::two(&self.down_proj),
        ]
    }

    pub fn params(&self) -> Vec<IdParam> {
        let mut v = self.qkv_params();
        v.extend(self.out_params());
        v
    }
}

impl Llama {
    /// Every parameter once (a tied head is the embedding).
    pub fn params(&self) -> Vec<IdParam> {
        let mut v = vec![IdParam::two(&self.embed_tokens)];
        for b in &self.layers {
            v.extend(b.params());
        }
        v.push(IdParam::one(&self.norm));
        if let Some(h) = &self.lm_head {
            v.push(IdParam::two(h));
        }
        v
    }
}
