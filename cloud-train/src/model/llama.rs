//! Llama-3 in burn, tensor for tensor as HF transformers' `LlamaForCausalLM`: weights keep HF's
//! names and `[out, in]` layout, so loading and saving a checkpoint is a plain copy.

use burn::module::{Module, Param};
use burn::prelude::*;
use burn::tensor::activation::{log_softmax, silu, softmax};
use burn::tensor::DType;
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

/// `x W^T` with an HF `[out, in]` weight, computed in `x`'s dtype (the f32 master weight is cast
/// when the activations are BF16; the cast's backward returns f32 gradients).
///
/// # Shapes
/// - x: `[batch, seq, in]`, w: `[out, in]`, returns `[batch, seq, out]`
pub fn linear(x: Tensor<3>, w: &Param<Tensor<2>>) -> Tensor<3> {
    let [b, s, d] = x.dims();
    let w = in_dtype(w.val(), x.dtype());
    let out = w.dims()[0];
    x.reshape([b * s, d])
        .matmul(w.transpose())
        .reshape([b, s, out])
}

fn in_dtype<const D: usize>(t: Tensor<D>, dtype: DType) -> Tensor<D> {
    if t.dtype() == dtype {
        t
    } else {
        t.cast(dtype)
    }
}

/// `x / sqrt(mean(x^2) + eps) * w` over the last dimension, in f32 whatever `x`'s dtype (as
/// transformers), the result back in `x`'s dtype.
///
/// # Shapes
/// - x: `[batch, seq, hidden]`, w: `[hidden]`, returns `[batch, seq, hidden]`
pub fn rms_norm(x: Tensor<3>, w: &Param<Tensor<1>>, eps: f64) -> Tensor<3> {
    let dtype = x.dtype();
    let x = in_dtype(x, DType::F32);
    let inv_rms = x
        .clone()
        .square()
        .mean_dim(2)
        .add_scalar(eps)
        .sqrt()
        .recip();
    let normed = in_dtype(x * inv_rms, dtype);
    normed * in_dtype(w.val(), dtype).unsqueeze::<3>()
}

/// Per-forward constants: the rope tables for one sequence length and the compute dtype.
pub struct ForwardCtx {
    /// `[seq, head_dim / 2]`
    pub cos: Tensor<2>,
    /// `[seq, head_dim / 2]`
    pub sin: Tensor<2>,
    /// F32, or BF16 for mixed precision (norms, softmax and the loss stay in f32).
    pub dtype: DType,
}

impl ForwardCtx {
    pub fn new(dims: &Dims, seq: usize, dtype: DType, device: &Device) -> Self {
        let (cos, sin) = dims.rope.tables(0, seq, device);
        Self {
            cos: in_dtype(cos, dtype),
            sin: in_dtype(sin, dtype),
            dtype,
        }
    }
}

/// Causal softmax attention of a block of queries over keys `0..kv_len`, grouped-query heads.
/// Query row r sits at position `q_offset + r`; keys after it are masked.
///
/// # Shapes
/// - q: `[batch, n_heads, q_len, head_dim]`
/// - k, v: `[batch, n_kv_heads, kv_len, head_dim]`
/// - returns: `[batch, n_heads, q_len, head_dim]`
pub fn causal_attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, q_offset: usize) -> Tensor<4> {
    let [b, nh, sq, hd] = q.dims();
    let [_, nkv, sk, _] = k.dims();
    let groups = nh / nkv;
    let dtype = q.dtype();
    // Query head h reads KV head h / groups, so the `groups` query heads of one KV head stack
    // into one [groups * q_len, hd] matrix (no copy of k or v).
    let scores = q
        .reshape([b, nkv, groups * sq, hd])
        .matmul(k.swap_dims(2, 3))
        .mul_scalar(1.0 / (hd as f64).sqrt())
        .reshape([b, nh, sq, sk]);
    let future = Tensor::<2, Bool>::tril_mask([sq, sk], q_offset as i64, &scores.device())
        .unsqueeze::<4>()
        .expand([b, nh, sq, sk]);
    // Softmax in f32 (as transformers' eager attention), probabilities back in the compute dtype.
    let scores = in_dtype(scores, DType::F32).mask_fill(future, f32::NEG_INFINITY);
    let probs = in_dtype(softmax(scores, 3), dtype);
    probs
        .reshape([b, nkv, groups * sq, sk])
        .matmul(v)
        .reshape([b, nh, sq, hd])
}

impl Block {
    /// # Shapes
    /// - x: `[batch, seq, hidden]`, returns `[batch, seq, hidden]`
    pub fn forward(&self, x: Tensor<3>, dims: &Dims, ctx: &ForwardCtx) -> Tensor<3> {
        let (q, k, v) = self.qkv(x.clone(), dims, ctx);
        let x = self.attention_residual(x, causal_attention(q, k, v, 0));
        self.mlp_residual(x, dims)
    }

    /// Input norm, Q/K/V projections, heads split out, rotary embeddings on Q and K.
    ///
    /// # Shapes
    /// - x: `[batch, seq, hidden]` (the residual stream)
    /// - returns q `[batch, n_heads, seq, head_dim]`, k and v `[batch, n_kv_heads, seq, head_dim]`
    pub fn qkv(
        &self,
        x: Tensor<3>,
        dims: &Dims,
        ctx: &ForwardCtx,
    ) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let [b, s, _] = x.dims();
        let (nh, nkv, hd) = (dims.n_heads, dims.n_kv_heads, dims.head_dim);
        let x = rms_norm(x, &self.input_layernorm, dims.eps);
        let q = linear(x.clone(), &self.q_proj)
            .reshape([b, s, nh, hd])
            .swap_dims(1, 2);
        let k = linear(x.clone(), &self.k_proj)
            .reshape([b, s, nkv, hd])
            .swap_dims(1, 2);
        let v = linear(x, &self.v_proj)
            .reshape([b, s, nkv, hd])
            .swap_dims(1, 2);
        let q = apply_rope(q, &ctx.cos, &ctx.sin);
        let k = apply_rope(k, &ctx.cos, &ctx.sin);
        (q, k, v)
    }

    /// Heads merged, output projection, added to the residual stream.
    ///
    /// # Shapes
    /// - x: `[batch, seq, hidden]`, attn: `[batch, n_heads, seq, head_dim]`,
    ///   returns `[batch, seq, hidden]`
    pub fn attention_residual(&self, x: Tensor<3>, attn: Tensor<4>) -> Tensor<3> {
        let [b, nh, s, hd] = attn.dims();
        let merged = attn.swap_dims(1, 2).reshape([b, s, nh * hd]);
        x + linear(merged, &self.o_proj)
    }

    /// Post-attention norm and SwiGLU `down(silu(gate(x)) * up(x))`, added to the residual.
    ///
    /// # Shapes
    /// - x: `[batch, seq, hidden]`, returns `[batch, seq, hidden]`
    pub fn mlp_residual(&self, x: Tensor<3>, dims: &Dims) -> Tensor<3> {
        let h = rms_norm(x.clone(), &self.post_attention_layernorm, dims.eps);
        let gate = silu(linear(h.clone(), &self.gate_proj));
        x + linear(gate * linear(h, &self.up_proj), &self.down_proj)
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
        let ctx = ForwardCtx::new(&self.dims, s, DType::F32, &ids.device());
        let mut x = self.embed(ids, &ctx);
        for layer in &self.layers {
            x = layer.forward(x, &self.dims, &ctx);
        }
        rms_norm(x, &self.norm, self.dims.eps)
    }

    /// Token embeddings in the compute dtype.
    ///
    /// # Shapes
    /// - ids: `[batch, seq]`, returns `[batch, seq, hidden]`
    pub fn embed(&self, ids: Tensor<2, Int>, ctx: &ForwardCtx) -> Tensor<3> {
        in_dtype(
            burn::tensor::module::embedding(self.embed_tokens.val(), ids),
            ctx.dtype,
        )
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
