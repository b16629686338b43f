//! Llama-3 in burn, tensor for tensor as HF transformers' `LlamaForCausalLM`: weights keep HF's
//! names and `[out, in]` layout, so loading and saving a checkpoint is a plain copy.

use burn::module::{Module, Param};
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, silu, softmax};
use llama_spec::LlamaConfig;

use super::rope::{apply_rope, Rope};

/// One transformer block. HF: `model.layers.N.*`.
#[derive(Module, Debug)]
pub struct Block {
    /// `[hidden]`
    pub input_layernorm: Param<Tensor<1>>,
    /// `[n_heads * head_dim, hidden]`
    pub q_proj: Param<Tensor<2>>,
    /// `[n_kv_heads * head_dim, hidden]`
    pub k_proj: Param<Tensor<2>>,
    /// `[n_kv_heads * head_dim, hidden]`
    pub v_proj: Param<Tensor<2>>,
    /// `[hidden, n_heads * head_dim]`
    pub o_proj: Param<Tensor<2>>,
    /// `[hidden]`
    pub post_attention_layernorm: Param<Tensor<1>>,
    /// `[intermediate, hidden]`
    pub gate_proj: Param<Tensor<2>>,
    /// `[intermediate, hidden]`
    pub up_proj: Param<Tensor<2>>,
    /// `[hidden, intermediate]`
    pub down_proj: Param<Tensor<2>>,
}

/// `LlamaForCausalLM`.
#[derive(Module, Debug)]
pub struct Llama {
    /// `[vocab, hidden]`
    pub embed_tokens: Param<Tensor<2>>,
    pub layers: Vec<Block>,
    /// `[hidden]`
    pub norm: Param<Tensor<1>>,
    /// `[vocab, hidden]`; `None` when the head is tied to `embed_tokens`.
    pub lm_head: Option<Param<Tensor<2>>>,
    #[module(skip)]
    pub dims: Dims,
}

/// The hyper-parameters the forward pass needs, copied out of `LlamaConfig`.
#[derive(Debug, Clone)]
pub struct Dims {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub eps: f64,
    pub rope: Rope,
}

impl Dims {
    pub fn new(c: &LlamaConfig) -> Self {
        Self {
            n_heads: c.num_attention_heads as usize,
            n_kv_heads: c.n_kv_heads() as usize,
            head_dim: c.head_dim() as usize,
            eps: f64::from(c.rms_norm_eps),
            rope: Rope::new(c),
        }
    }
}

/// `x W^T` with an HF `[out, in]` weight.
///
/// # Shapes
/// - x: `[batch, seq, in]`, w: `[out, in]`, returns `[batch, seq, out]`
fn linear(x: Tensor<3>, w: &Param<Tensor<2>>) -> Tensor<3> {
    let [b, s, d] = x.dims();
    let w = w.val();
    let out = w.dims()[0];
    x.reshape([b * s, d])
        .matmul(w.transpose())
        .reshape([b, s, out])
}

/// `x / sqrt(mean(x^2) + eps) * w` over the last dimension.
///
/// # Shapes
/// - x: `[batch, seq, hidden]`, w: `[hidden]`, returns `[batch, seq, hidden]`
pub fn rms_norm(x: Tensor<3>, w: &Param<Tensor<1>>, eps: f64) -> Tensor<3> {
    let inv_rms = x
        .clone()
        .square()
        .mean_dim(2)
        .add_scalar(eps)
        .sqrt()
        .recip();
    x * inv_rms * w.val().unsqueeze::<3>()
}

/// Per-forward constants: rope tables and the causal mask for one sequence length.
pub struct ForwardCtx {
    /// `[seq, head_dim / 2]`
    pub cos: Tensor<2>,
    /// `[seq, head_dim / 2]`
    pub sin: Tensor<2>,
    /// `[seq, seq]`, true above the diagonal (future positions).
    pub future: Tensor<2, Bool>,
}

impl ForwardCtx {
    pub fn new(dims: &Dims, seq: usize, device: &Device) -> Self {
        let (cos, sin) = dims.rope.tables(0, seq, device);
        let future = Tensor::<2, Bool>::tril_mask([seq, seq], 0, device);
        Self { cos, sin, future }
    }
}

impl Block {
    /// # Shapes
    /// - x: `[batch, seq, hidden]`, returns `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<3>, dims: &Dims, ctx: &ForwardCtx) -> Tensor<3> {
        let h = self.attention(
            rms_norm(x.clone(), &self.input_layernorm, dims.eps),
            dims,
            ctx,
        );
        let x = x + h;
        let h = self.mlp(rms_norm(
            x.clone(),
            &self.post_attention_layernorm,
            dims.eps,
        ));
        x + h
    }

    /// Causal grouped-query attention, projections included.
    ///
    /// # Shapes
    /// - x: `[batch, seq, hidden]` (normed), returns `[batch, seq, hidden]`
    pub fn attention(&self, x: Tensor<3>, dims: &Dims, ctx: &ForwardCtx) -> Tensor<3> {
        let [b, s, _] = x.dims();
        let (nh, nkv, hd) = (dims.n_heads, dims.n_kv_heads, dims.head_dim);
        let groups = nh / nkv;
        // 1. projections, heads split out: [b, heads, s, hd]
        let q = linear(x.clone(), &self.q_proj)
            .reshape([b, s, nh, hd])
            .swap_dims(1, 2);
        let k = linear(x.clone(), &self.k_proj)
            .reshape([b, s, nkv, hd])
            .swap_dims(1, 2);
        let v = linear(x, &self.v_proj)
            .reshape([b, s, nkv, hd])
            .swap_dims(1, 2);
        // 2. rotary embeddings on q and k
        let q = apply_rope(q, &ctx.cos, &ctx.sin);
        let k = apply_rope(k, &ctx.cos, &ctx.sin);
        // 3. scores: query head h reads KV head h / groups, so the `groups` query heads of one
        //    KV head stack into one [groups * s, hd] matrix (no copy of k or v).
        let q = q.reshape([b, nkv, groups * s, hd]);
        let scores = q
            .matmul(k.swap_dims(2, 3))
            .mul_scalar(1.0 / (hd as f64).sqrt())
            .reshape([b, nh, s, s]);
        // 4. causal mask and softmax
        let future = ctx.future.clone().unsqueeze::<4>().expand([b, nh, s, s]);
        let probs = softmax(scores.mask_fill(future, f32::NEG_INFINITY), 3);
        // 5. weighted values, heads merged, output projection
        let out = probs
            .reshape([b, nkv, groups * s, s])
            .matmul(v)
            .reshape([b, nh, s, hd])
            .swap_dims(1, 2)
            .reshape([b, s, nh * hd]);
        linear(out, &self.o_proj)
    }

    /// SwiGLU: `down(silu(gate(x)) * up(x))`.
    ///
    /// # Shapes
    /// - x: `[batch, seq, hidden]` (normed), returns `[batch, seq, hidden]`
    pub fn mlp(&self, x: Tensor<3>) -> Tensor<3> {
        let gate = silu(linear(x.clone(), &self.gate_proj));
        linear(gate * linear(x, &self.up_proj), &self.down_proj)
    }
}

impl Llama {
    /// The output head's weight: `lm_head` or, tied, the embedding.
    pub fn head(&self) -> &Param<Tensor<2>> {
        self.lm_head.as_ref().unwrap_or(&self.embed_tokens)
    }

    /// Token ids to the final normed hidden states.
    ///
    /// # Shapes
    /// - ids: `[batch, seq]`, returns `[batch, seq, hidden]`
    pub fn hidden(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let [_, s] = ids.dims();
        let ctx = ForwardCtx::new(&self.dims, s, &ids.device());
        let mut x = burn::tensor::module::embedding(self.embed_tokens.val(), ids);
        for layer in &self.layers {
            x = layer.forward(x, &self.dims, &ctx);
        }
        rms_norm(x, &self.norm, self.dims.eps)
    }

    /// # Shapes
    /// - hidden: `[batch, seq, hidden]`, returns `[batch, seq, vocab]`
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        linear(hidden, self.head())
    }

    /// # Shapes
    /// - ids: `[batch, seq]`, returns `[batch, seq, vocab]`
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        self.logits(self.hidden(ids))
    }

    /// Mean next-token cross-entropy (transformers' causal-LM loss with `labels = ids`):
    /// position t predicts ids[t + 1].
    ///
    /// # Shapes
    /// - ids: `[batch, seq]`, returns `[1]`
    pub fn loss(&self, ids: Tensor<2, Int>) -> Tensor<1> {
        let [b, s] = ids.dims();
        let hidden = self.hidden(ids.clone()).narrow(1, 0, s - 1);
        let labels = ids.narrow(1, 1, s - 1).reshape([b * (s - 1), 1]);
        let vocab = self.head().dims()[0];
        let logits = self.logits(hidden).reshape([b * (s - 1), vocab]);
        cross_entropy(logits, labels)
    }
}

/// Mean negative log-likelihood of `labels` under `logits`.
///
/// # Shapes
/// - logits: `[n, vocab]`, labels: `[n, 1]`, returns `[1]`
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<2, Int>) -> Tensor<1> {
    log_softmax(logits, 1).gather(1, labels).mean().neg()
}
