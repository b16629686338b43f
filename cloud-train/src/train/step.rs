//! One batch's loss and parameter gradients, with the memory savers burn 0.22 lacks.
//!
//! burn's autodiff keeps every intermediate of a forward pass until backward, recomputes only
//! element-wise ops when checkpointing, keeps the full `seq x seq` attention probabilities, and
//! would keep `tokens x vocab` logits for the loss. Here the backward pass is cut into segments,
//! each a small graph from detached leaves, run back to front with the incoming gradient `g`
//! (the backward of `sum(out * g)` is exactly the vector-Jacobian product):
//!
//! - loss head, per chunk of `ce_chunk` positions: final norm, logits, cross-entropy. Only one
//!   chunk's logits ever exist.
//! - body: either one graph over all layers (fastest), or, with `checkpoint_layers`, a forward
//!   pass without a graph that keeps only each layer's input, then each layer recomputed with a
//!   graph during backward (layer-level activation checkpointing).
//! - with `checkpoint_layers` and `attention_block`, a layer's attention core is itself split
//!   by blocks of queries: one block's `block x seq` probabilities at a time, never `seq x seq`.
//!
//! Each parameter's gradient goes to a [`GradSink`] as soon as it is final: a checkpointed
//! layer's right after its backward, the rest at the end of the pass. The sink either adds it
//! to the whole gradient ([`FullGrads`]) or, under ZeRO-2, reduce-scatters it across ranks and
//! keeps only this rank's part, so that a whole gradient never exists at once.

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::DType;

use crate::dist::CommError;
use crate::model::llama::{causal_attention, rms_norm, ForwardCtx};
use crate::model::params::{absorb, absorb_value, IdParam, ParamValue};
use crate::model::{scalar, Llama};
use crate::train::cross_entropy::{self, RowWeights};
use crate::train::source::{Local, ParamSource};

/// Targets equal to this are not predicted (prompt tokens in SFT, padding).
pub const IGNORE: i64 = -100;

/// Input ids and, per position, the id it must predict (or [`IGNORE`]).
#[derive(Debug, Clone)]
pub struct Batch {
    /// `[batch, seq]`
    pub ids: Tensor<2, Int>,
    /// `[batch, seq]`
    pub targets: Tensor<2, Int>,
}

impl Batch {
    /// Plain language modelling: position t predicts ids[t + 1]; the last position nothing.
    pub fn causal_lm(ids: &[Vec<u32>], device: &Device) -> Self {
        let (b, s) = (ids.len(), ids.first().map_or(0, Vec::len));
        let flat: Vec<i64> = ids.iter().flatten().map(|&t| i64::from(t)).collect();
        let targets: Vec<i64> = ids
            .iter()
            .flat_map(|row| {
                row.iter()
                    .skip(1)
                    .map(|&t| i64::from(t))
                    .chain(std::iter::once(IGNORE))
            })
            .collect();
        Self {
            ids: Tensor::from_data(TensorData::new(flat, [b, s]), device),
            targets: Tensor::from_data(TensorData::new(targets, [b, s]), device),
        }
    }
}

impl Batch {
    /// Supervised rows: position `t` predicts `labels[t + 1]` where `mask[t + 1]` (a response
    /// token), nothing elsewhere. `labels` is normally `ids` itself; it is separate so that tests
    /// can show that masked labels never matter. Rows are right-padded to the longest with
    /// `pad` (padding is never predicted and, being after every real token, never attended to
    /// by one under the causal mask).
    pub fn masked(rows: &[(&[u32], &[u32], &[bool])], pad: u32, device: &Device) -> Self {
        let b = rows.len();
        let s = rows
            .iter()
            .map(|(ids, _, _)| ids.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let mut ids = Vec::with_capacity(b * s);
        let mut targets = Vec::with_capacity(b * s);
        for (row, labels, mask) in rows {
            for t in 0..s {
                ids.push(i64::from(row.get(t).copied().unwrap_or(pad)));
                let next = t + 1;
                targets.push(if next < row.len() && mask[next] {
                    i64::from(labels[next])
                } else {
                    IGNORE
                });
            }
        }
        Self {
            ids: Tensor::from_data(TensorData::new(ids, [b, s]), device),
            targets: Tensor::from_data(TensorData::new(targets, [b, s]), device),
        }
    }

    /// Packed pre-training windows of `seq + 1` tokens each: inputs are the first `seq`,
    /// targets the last `seq` (every position predicts the next token).
    pub fn from_windows(windows: &[Vec<u32>], device: &Device) -> Self {
        let b = windows.len();
        let s = windows.first().map_or(1, Vec::len).max(1) - 1;
        let ids: Vec<i64> = windows
            .iter()
            .flat_map(|w| w[..s].iter().map(|&t| i64::from(t)))
            .collect();
        let targets: Vec<i64> = windows
            .iter()
            .flat_map(|w| w[1..].iter().map(|&t| i64::from(t)))
            .collect();
        Self {
            ids: Tensor::from_data(TensorData::new(ids, [b, s]), device),
            targets: Tensor::from_data(TensorData::new(targets, [b, s]), device),
        }
    }
}

/// Every position's `-log p(target)` (0 where the target is [`IGNORE`]), row-major
/// `[batch * seq]`, without gradients, the loss head by chunks of `chunk` positions: for
/// evaluation and for DPO's reference log-probabilities.
pub fn position_nll(model: &Llama, batch: &Batch, chunk: usize) -> Vec<f32> {
    match position_nll_from(&Local, model, Some(batch), chunk) {
        Ok(nll) => nll.unwrap_or_default(),
        Err(e) => unreachable!("Local makes no collective call: {e}"),
    }
}

/// [`position_nll`] with the parameters from `source`. Under ZeRO-3 every rank must make the
/// same calls: a rank without a batch for this round passes `None` (it takes part in the
/// gathers, computes nothing, and gets `None`).
pub fn position_nll_from(
    source: &dyn ParamSource,
    model: &Llama,
    batch: Option<&Batch>,
    chunk: usize,
) -> Result<Option<Vec<f32>>, CommError> {
    let root = source.root(model)?;
    let frozen = root.valid();
    let dims = &model.dims;
    // Layer by layer (one gathered layer at a time under ZeRO-3).
    let mut x = batch.map(|b| {
        let ctx = ForwardCtx::new(dims, b.ids.dims()[1], DType::F32, &b.ids.device());
        (frozen.embed(b.ids.clone(), &ctx), ctx)
    });
    for shell in &model.layers {
        let layer = source.layer(shell)?.valid();
        x = x.map(|(x, ctx)| (layer.forward(x, dims, &ctx), ctx));
    }
    let (Some(batch), Some((x, _))) = (batch, x) else {
        return Ok(None);
    };
    let h = rms_norm(x, &frozen.norm, dims.eps);
    let [b, s] = batch.ids.dims();
    let hidden = h.dims()[2];
    let rows = h.reshape([b * s, hidden]);
    let targets = batch.targets.clone().reshape([b * s]);
    let chunk = chunk.max(1);
    let mut out = Vec::with_capacity(b * s);
    let mut at = 0;
    while at < b * s {
        let len = chunk.min(b * s - at);
        let part = cross_entropy::nll_rows(
            rows.clone().narrow(0, at, len),
            frozen.head().val(),
            targets.clone().narrow(0, at, len),
        );
        out.extend(
            part.into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap_or_else(|_| vec![f32::NAN; len]),
        );
        at += len;
    }
    Ok(Some(out))
}

/// Which memory savers to use (all off = one plain autodiff graph).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemoryPlan {
    /// Recompute each layer's forward during backward; keep only layer inputs.
    #[serde(default)]
    pub checkpoint_layers: bool,
    /// With `checkpoint_layers`: queries per attention block in backward.
    #[serde(default)]
    pub attention_block: Option<usize>,
    /// Positions per cross-entropy chunk (the logits of one chunk at a time).
    #[serde(default)]
    pub ce_chunk: Option<usize>,
    /// BF16 activations and matmuls, f32 master weights, gradients and loss.
    #[serde(default)]
    pub bf16: bool,
}

/// Where a backward pass puts its gradients.
///
/// `take` is called once per pass for each group of parameters whose gradients are final (a
/// checkpointed layer right after its backward, everything else at the end), the groups in
/// the same order on every rank, so a sink may run one collective per call.
pub trait GradSink {
    /// Take `weight x` the gradients of `params` out of `grads`; a parameter absent from
    /// `grads` had no gradient in this pass.
    fn take(
        &mut self,
        params: &[IdParam],
        grads: &mut GradientsParams,
        weight: f64,
    ) -> Result<(), CommError>;
    /// Where the pass reads the parameters (ZeRO-3 gathers them layer by layer).
    fn source(&self) -> &dyn ParamSource {
        &Local
    }
}

/// The whole gradient, summed (with weights) over passes.
#[derive(Default)]
pub struct FullGrads(pub GradientsParams);

impl GradSink for FullGrads {
    fn take(
        &mut self,
        params: &[IdParam],
        grads: &mut GradientsParams,
        weight: f64,
    ) -> Result<(), CommError> {
        fn add<const D: usize>(
            into: &mut GradientsParams,
            from: &mut GradientsParams,
            id: burn::module::ParamId,
            w: f64,
        ) {
            if let Some(g) = from.remove::<D>(id) {
                let g = if w == 1.0 { g } else { g.mul_scalar(w) };
                let total = match into.remove::<D>(id) {
                    Some(prev) => prev + g,
                    None => g,
                };
                into.register(id, total);
            }
        }
        for p in params {
            match p.value {
                ParamValue::D1(_) => add::<1>(&mut self.0, grads, p.id, weight),
                ParamValue::D2(_) => add::<2>(&mut self.0, grads, p.id, weight),
            }
        }
        Ok(())
    }
}

/// The result of [`loss_and_grads`].
pub struct LossGrads {
    /// Mean cross-entropy over the predicted positions.
    pub loss: f64,
    /// Positions that had a target.
    pub predicted: usize,
    pub grads: GradientsParams,
}

/// A pass's loss, its gradients having gone to a [`GradSink`].
#[derive(Debug, Clone, Copy)]
pub struct PassLoss {
    /// Mean cross-entropy over the predicted positions (weighted losses: `sum_t w_t * nll_t`).
    pub loss: f64,
    /// Positions that had a target.
    pub predicted: usize,
}

/// Loss and gradients of every trainable parameter for one batch. `model` must have autodiff
/// enabled (`Module::train`). The numbers are those of `Llama::loss` + `backward`, whatever the
/// plan (to f32 rounding; BF16 changes them as mixed precision does).
pub fn loss_and_grads(model: &Llama, batch: &Batch, plan: &MemoryPlan) -> LossGrads {
    into_full(|sink| segmented(model, batch, plan, None, 1.0, sink))
}

/// [`loss_and_grads`] with the gradients, times `weight`, handed to `sink`.
pub fn loss_into(
    model: &Llama,
    batch: &Batch,
    plan: &MemoryPlan,
    weight: f64,
    sink: &mut dyn GradSink,
) -> Result<PassLoss, CommError> {
    segmented(model, batch, plan, None, weight, sink)
}

/// [`loss_and_grads_weighted`] with the gradients, times `weight`, handed to `sink`.
pub fn loss_into_weighted(
    model: &Llama,
    batch: &Batch,
    plan: &MemoryPlan,
    weights: impl FnOnce(&[f32]) -> Vec<f32>,
    weight: f64,
    sink: &mut dyn GradSink,
) -> Result<PassLoss, CommError> {
    segmented(model, batch, plan, Some(Box::new(weights)), weight, sink)
}

fn into_full(pass: impl FnOnce(&mut dyn GradSink) -> Result<PassLoss, CommError>) -> LossGrads {
    let mut full = FullGrads::default();
    match pass(&mut full) {
        Ok(PassLoss { loss, predicted }) => LossGrads {
            loss,
            predicted,
            grads: full.0,
        },
        Err(e) => unreachable!("FullGrads makes no collective call: {e}"),
    }
}

/// Gradients of `sum_t w_t * nll_t` over the positions `t` of the batch (row-major,
/// `[batch * seq]`), where `weights` receives every position's `nll_t = -log p(target_t)` (0 where
/// the target is [`IGNORE`]) and returns the `w_t`. Losses that are functions of per-sequence
/// log-probabilities (DPO: `logp = -sum of nll` over the response) get their exact gradient
/// this way, with the weights `-dL/dlogp`. The body runs forward once; the loss head twice
/// (once for the nll, once with gradients). The returned `loss` is `sum_t w_t * nll_t`.
pub fn loss_and_grads_weighted(
    model: &Llama,
    batch: &Batch,
    plan: &MemoryPlan,
    weights: impl FnOnce(&[f32]) -> Vec<f32>,
) -> LossGrads {
    into_full(|sink| segmented(model, batch, plan, Some(Box::new(weights)), 1.0, sink))
}

type WeightFn<'a> = Box<dyn FnOnce(&[f32]) -> Vec<f32> + 'a>;

fn segmented(
    model: &Llama,
    batch: &Batch,
    plan: &MemoryPlan,
    weight_fn: Option<WeightFn<'_>>,
    weight: f64,
    sink: &mut dyn GradSink,
) -> Result<PassLoss, CommError> {
    let [b, s] = batch.ids.dims();
    let device = batch.ids.device();
    let dtype = if plan.bf16 { DType::BF16 } else { DType::F32 };
    // The embedding, final norm and head for the whole pass; layers as they are reached.
    let root = sink.source().root(model)?;
    let model: &Llama = &root;
    let checkpoint_layers = plan.checkpoint_layers || sink.source().layer_by_layer();
    let ctx = ForwardCtx::new(&model.dims, s, dtype, &device);
    let targets = batch.targets.clone().reshape([b * s]);
    let predicted = scalar(targets.clone().greater_equal_elem(0).float().sum()).max(0.0) as usize;
    let mut grads = GradientsParams::new();

    // 1. body forward: the final residual stream, with a graph or with saved layer inputs.
    let inputs: Vec<Tensor<3>>;
    let top = if checkpoint_layers {
        let mut x = model.valid().embed(batch.ids.clone(), &ctx);
        let mut saved = Vec::with_capacity(model.layers.len());
        for shell in &model.layers {
            let layer = sink.source().layer(shell)?.valid();
            saved.push(x.clone());
            x = layer.forward(x, &model.dims, &ctx);
        }
        inputs = saved;
        x.autodiff()
    } else {
        inputs = Vec::new();
        let mut x = model.embed(batch.ids.clone(), &ctx);
        for layer in &model.layers {
            x = layer.forward(x, &model.dims, &ctx);
        }
        x
    };

    // 2. loss head by chunks of positions: norm, logits, cross-entropy, backward.
    let hidden = top.dims()[2];
    let rows = top.clone().detach().reshape([b * s, hidden]);
    let chunk = plan.ce_chunk.unwrap_or(b * s).max(1);
    let denom = predicted.max(1) as f64;
    let mut loss_sum = 0f64;
    let mut d_rows = Vec::new();
    let mut start = 0;
    let head = model.head();
    let mut d_head: Option<Tensor<2>> = None;
    // Weighted losses: every position's nll first (no graph), then the caller's weights.
    let weights: Option<Vec<f32>> = weight_fn.map(|f| {
        let mut nll = Vec::with_capacity(b * s);
        let mut at = 0;
        while at < b * s {
            let len = chunk.min(b * s - at);
            let x = rows.clone().narrow(0, at, len).reshape([1, len, hidden]);
            let h = rms_norm(x, &model.norm, model.dims.eps).reshape([len, hidden]);
            let part =
                cross_entropy::nll_rows(h.detach(), head.val(), targets.clone().narrow(0, at, len));
            nll.extend(
                part.into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .unwrap_or_else(|_| vec![f32::NAN; len]),
            );
            at += len;
        }
        let w = f(&nll);
        assert_eq!(w.len(), b * s, "one weight per position");
        w
    });
    while start < b * s {
        let len = chunk.min(b * s - start);
        // Final norm on the tape (tiny); logits and cross-entropy by hand (cross_entropy.rs).
        let x = rows.clone().narrow(0, start, len).require_grad();
        let h = rms_norm(
            x.clone().reshape([1, len, hidden]),
            &model.norm,
            model.dims.eps,
        )
        .reshape([len, hidden]);
        let row_weights = match &weights {
            None => RowWeights::Mean(denom),
            Some(w) => RowWeights::Each(Box::new(Tensor::from_data(
                TensorData::new(w[start..start + len].to_vec(), [len]),
                &device,
            ))),
        };
        let part = cross_entropy::chunk_weighted(
            h.clone().detach(),
            head.val(),
            targets.clone().narrow(0, start, len),
            row_weights,
        );
        loss_sum += match &weights {
            None => part.nll_sum / denom,
            Some(_) => part.nll_sum,
        };
        d_head = Some(match d_head {
            Some(acc) => acc + part.d_weight,
            None => part.d_weight,
        });
        let d_h = part.d_hidden.cast(h.dtype()).autodiff();
        let g = (h * d_h).sum().backward();
        absorb(&mut grads, &[IdParam::one(&model.norm)], &g);
        d_rows.push(x.grad(&g).unwrap_or_else(|| x.zeros_like()));
        start += len;
    }
    if let Some(d) = d_head {
        absorb_value(&mut grads, head.id, d);
    }
    let mut g_top = Tensor::cat(d_rows, 0).reshape([b, s, hidden]);

    // 3. body backward; each checkpointed layer's gradients leave as soon as they are final.
    let rest = if !checkpoint_layers {
        let g = (top * g_top).sum().backward();
        absorb(&mut grads, &model.params(), &g);
        model.params()
    } else {
        for (shell, x_in) in model.layers.iter().zip(inputs).rev() {
            let layer = sink.source().layer(shell)?;
            let layer: &crate::model::Block = &layer;
            let x = x_in.autodiff().require_grad();
            g_top = match plan.attention_block {
                None => {
                    let out = layer.forward(x.clone(), &model.dims, &ctx);
                    let g = (out * g_top).sum().backward();
                    absorb(&mut grads, &layer.params(), &g);
                    x.grad(&g).unwrap_or_else(|| x.zeros_like())
                }
                Some(block) => {
                    layer_backward_blocked(layer, x, g_top, block, model, &ctx, &mut grads)
                }
            };
            sink.take(&layer.params(), &mut grads, weight)?;
        }
        let emb = model.embed(batch.ids.clone(), &ctx);
        let g = (emb * g_top).sum().backward();
        absorb(&mut grads, &[IdParam::two(&model.embed_tokens)], &g);
        let mut rest = vec![IdParam::two(&model.embed_tokens), IdParam::one(&model.norm)];
        rest.extend(model.lm_head.as_ref().map(IdParam::two));
        rest
    };
    sink.take(&rest, &mut grads, weight)?;
    Ok(PassLoss {
        loss: loss_sum,
        predicted,
    })
}

/// Backward of one checkpointed layer with the attention core split by query blocks.
/// Returns the gradient with respect to the layer's input.
fn layer_backward_blocked(
    layer: &crate::model::Block,
    x: Tensor<3>,
    g_out: Tensor<3>,
    block: usize,
    model: &Llama,
    ctx: &ForwardCtx,
    grads: &mut GradientsParams,
) -> Tensor<3> {
    let dims = &model.dims;
    let block = block.max(1);
    // A. input side with a graph kept until the end: norm, q/k/v, rope.
    let (q, k, v) = layer.qkv(x.clone(), dims, ctx);
    let (qd, kd, vd) = (q.clone().detach(), k.clone().detach(), v.clone().detach());
    let s = qd.dims()[2];
    let spans: Vec<(usize, usize)> = (0..s)
        .step_by(block)
        .map(|st| (st, block.min(s - st)))
        .collect();
    // B. attention core forward without a graph, block by block.
    let attn = Tensor::cat(
        spans
            .iter()
            .map(|&(st, len)| {
                causal_attention(
                    qd.clone().narrow(2, st, len),
                    kd.clone().narrow(2, 0, st + len),
                    vd.clone().narrow(2, 0, st + len),
                    st,
                )
            })
            .collect(),
        2,
    );
    // C. output side: o_proj + residual + MLP from detached leaves.
    let x2 = x.clone().detach().require_grad();
    let a = attn.require_grad();
    let out = layer.mlp_residual(layer.attention_residual(x2.clone(), a.clone()), dims);
    let g = (out * g_out).sum().backward();
    absorb(grads, &layer.out_params(), &g);
    let d_attn = a.grad(&g).unwrap_or_else(|| a.zeros_like());
    let d_x2 = x2.grad(&g).unwrap_or_else(|| x2.zeros_like());
    // B'. attention core backward, one block of queries at a time.
    let mut dq = Vec::with_capacity(spans.len());
    let mut dk = kd.zeros_like();
    let mut dv = vd.zeros_like();
    for &(st, len) in &spans {
        let qi = qd.clone().narrow(2, st, len).require_grad();
        let ki = kd.clone().narrow(2, 0, st + len).require_grad();
        let vi = vd.clone().narrow(2, 0, st + len).require_grad();
        let oi = causal_attention(qi.clone(), ki.clone(), vi.clone(), st);
        let g = (oi * d_attn.clone().narrow(2, st, len)).sum().backward();
        dq.push(qi.grad(&g).unwrap_or_else(|| qi.zeros_like()));
        let pad = |t: Tensor<4>| {
            let [b, h, n, d] = t.dims();
            if n == s {
                t
            } else {
                let zeros = Tensor::<4>::zeros([b, h, s - n, d], &t.device()).cast(t.dtype());
                Tensor::cat(vec![t, zeros], 2)
            }
        };
        dk = dk + pad(ki.grad(&g).unwrap_or_else(|| ki.zeros_like()));
        dv = dv + pad(vi.grad(&g).unwrap_or_else(|| vi.zeros_like()));
    }
    let dq = Tensor::cat(dq, 2);
    // A'. input side backward.
    let g = ((q * dq).sum() + (k * dk).sum() + (v * dv).sum()).backward();
    absorb(grads, &layer.qkv_params(), &g);
    x.grad(&g).unwrap_or_else(|| x.zeros_like()) + d_x2
}
