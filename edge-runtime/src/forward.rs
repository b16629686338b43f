//! The Llama-family forward pass (Qwen2: plus Q/K/V biases and half-split RoPE) over a batch
//! of tokens at consecutive positions, writing K/V into the session's cache. Numerics follow
//! llama.cpp's CPU graph (without flash attention): RMSNorm with a double-precision sum, ggml's
//! RoPE angle recurrence, Q and the attention probabilities rounded to f16 against the f16 KV
//! cache.

use half::f16;
use llama_spec::config::RopeStyle;

use crate::kernels::attention::{attention, Attn};
use crate::kernels::matmul::{first_bytes, matmul, ActBuf, MatOut};
use crate::kernels::pool::ThreadPool;
use crate::kernels::Isa;
use crate::model::{MatRef, Model};

/// Cos/sin of every (position, pair) up to the context size, computed as ggml does
/// (`theta *= theta_scale` per pair, divided by the Llama-3 frequency factors).
pub(crate) struct RopeTable {
    style: RopeStyle,
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    pub fn new(
        n_ctx: usize,
        head_dim: usize,
        base: f32,
        freq_factors: Option<&[f32]>,
        style: RopeStyle,
    ) -> Self {
        let half = head_dim / 2;
        let theta_scale = base.powf(-2.0 / head_dim as f32);
        let mut cos = vec![0f32; n_ctx * half];
        let mut sin = vec![0f32; n_ctx * half];
        for p in 0..n_ctx {
            let mut theta = p as f32;
            for i in 0..half {
                let ff = freq_factors.map_or(1.0, |f| f[i]);
                let t = theta / ff;
                cos[p * half + i] = t.cos();
                sin[p * half + i] = t.sin();
                theta *= theta_scale;
            }
        }
        Self {
            style,
            half,
            cos,
            sin,
        }
    }

    /// The table for `model`'s head size, base, frequency factors and RoPE style.
    pub fn for_model(model: &Model, n_ctx: usize) -> Self {
        let c = &model.config;
        Self::new(
            n_ctx,
            c.head_dim() as usize,
            c.rope_theta,
            model.w.rope_freqs.as_deref(),
            c.architecture.rope_style(),
        )
    }

    /// Rotate the pairs of every head in `v`: adjacent dimensions (llama.cpp's "normal" RoPE
    /// on the permuted Q/K layout of Llama files) or dimension `i` with `i + head_dim/2`
    /// (its NEOX RoPE, Qwen2).
    fn apply(&self, v: &mut [f32], pos: usize) {
        let (c, s) = (
            &self.cos[pos * self.half..(pos + 1) * self.half],
            &self.sin[pos * self.half..(pos + 1) * self.half],
        );
        let half = self.half;
        let (first, second) = match self.style {
            RopeStyle::AdjacentPairs => (2, 1),
            RopeStyle::Halves => (1, half),
        };
        for head in v.chunks_exact_mut(2 * half) {
            for i in 0..half {
                let (a, b) = (first * i, first * i + second);
                let (x0, x1) = (head[a], head[b]);
                // GCC contracts ggml's `x0*cos - x1*sin` into one FMA (the first product).
                head[a] = x0.mul_add(c[i], -(x1 * s[i]));
                head[b] = x0.mul_add(s[i], x1 * c[i]);
            }
        }
    }
}

/// The f16 KV cache of one session: per layer, per K/V head, `n_ctx` rows of `head_dim`.
/// Head-major, so that attention reads each head's rows as one sequential stream (rows of all
/// heads side by side put a head's rows `n_kv_head * head_dim * 2` bytes apart, which the
/// hardware prefetcher does not follow: attention waited on those loads).
pub(crate) struct KvCache {
    pub n_ctx: usize,
    n_kv_head: usize,
    head_dim: usize,
    k: Vec<Vec<f16>>,
    v: Vec<Vec<f16>>,
}

impl KvCache {
    pub fn new(n_layers: usize, n_ctx: usize, n_kv_head: usize, head_dim: usize) -> Self {
        let len = n_kv_head * n_ctx * head_dim;
        Self {
            n_ctx,
            n_kv_head,
            head_dim,
            k: (0..n_layers).map(|_| vec![f16::ZERO; len]).collect(),
            v: (0..n_layers).map(|_| vec![f16::ZERO; len]).collect(),
        }
    }

    pub fn bytes(&self) -> usize {
        2 * self.k.len() * self.n_kv_head * self.n_ctx * self.head_dim * 2
    }

    /// Stores one token's K and V rows (`[n_kv_head * head_dim]` each) of layer `li` at `pos`.
    fn write(&mut self, li: usize, pos: usize, k: &[f32], v: &[f32]) {
        let hd = self.head_dim;
        for (cache, x) in [(&mut self.k[li], k), (&mut self.v[li], v)] {
            for (hh, src) in x.chunks_exact(hd).enumerate() {
                let at = (hh * self.n_ctx + pos) * hd;
                for (d, &s) in cache[at..at + hd].iter_mut().zip(src) {
                    *d = f16::from_f32(s);
                }
            }
        }
    }
}

/// Buffers for a batch of up to `n_batch` tokens, allocated once per session.
pub(crate) struct Scratch {
    pub n_batch: usize,
    x: Vec<f32>,      // [n, hidden] residual stream
    xb: Vec<f32>,     // [n, hidden] normed input
    xb2: Vec<f32>,    // [n, hidden] matmul output
    q: Vec<f32>,      // [n, n_head * head_dim]
    k: Vec<f32>,      // [n, kv_dim]
    v: Vec<f32>,      // [n, kv_dim]
    att: Vec<f32>,    // [n, n_head * head_dim]
    gate: Vec<f32>,   // [n, ffn]
    up: Vec<f32>,     // [n, ffn]
    scores: Vec<f32>, // [n_threads, n_ctx]
    acts: ActBuf,
    /// Logits of the last token, or of every token with `LogitsMode::All`.
    pub logits: Vec<f32>,
}

impl Scratch {
    pub fn new(m: &Model, n_batch: usize, n_ctx: usize, n_threads: usize) -> Self {
        let c = &m.config;
        let h = c.hidden_size as usize;
        let qd = (c.num_attention_heads * c.head_dim()) as usize;
        let kvd = (c.n_kv_heads() * c.head_dim()) as usize;
        let ff = c.intermediate_size as usize;
        Self {
            n_batch,
            x: vec![0.0; n_batch * h],
            xb: vec![0.0; n_batch * h],
            xb2: vec![0.0; n_batch * h],
            q: vec![0.0; n_batch * qd],
            k: vec![0.0; n_batch * kvd],
            v: vec![0.0; n_batch * kvd],
            att: vec![0.0; n_batch * qd],
            gate: vec![0.0; n_batch * ff],
            up: vec![0.0; n_batch * ff],
            scores: vec![
                0.0;
                n_threads
                    * crate::kernels::attention::scratch_per_thread(
                        n_ctx,
                        c.num_attention_heads as usize,
                        c.n_kv_heads() as usize
                    )
            ],
            acts: ActBuf::with_capacity(n_batch, h.max(ff).max(qd)),
            logits: vec![0.0; c.vocab_size as usize],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogitsMode {
    Last,
    All,
}

/// [`rms_norm`] of rows `rows` of `x` (each `h` long) into the first `rows.len()` rows of `out`.
fn norm_rows(
    x: &[f32],
    w: &[f32],
    eps: f32,
    h: usize,
    rows: std::ops::Range<usize>,
    out: &mut [f32],
) {
    let first = rows.start;
    for t in rows {
        rms_norm(
            &x[t * h..(t + 1) * h],
            w,
            eps,
            &mut out[(t - first) * h..(t - first + 1) * h],
        );
    }
}

/// ggml's RMSNorm followed by the weight multiply.
fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let sum: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
    let mean = (sum / x.len() as f64) as f32;
    let scale = 1.0 / (mean + eps).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = (v * scale) * g;
    }
}

pub(crate) struct Engine<'a> {
    pub model: &'a Model,
    pub pool: &'a ThreadPool,
    pub isa: &'a Isa,
    pub rope: &'a RopeTable,
}

/// One sequence's share of a batch: its cache, the position of its first row, and how many
/// consecutive rows (tokens) it has in the batch.
pub(crate) struct Seq<'k> {
    pub kv: &'k mut KvCache,
    pub pos0: usize,
    pub n: usize,
}

impl KvCache {
    /// Copy the first `n` positions of every layer from `src` (same shape): a shared prefix
    /// computed once.
    pub fn copy_prefix_from(&mut self, src: &KvCache, n: usize) {
        assert!(self.n_ctx == src.n_ctx && self.head_dim == src.head_dim);
        let (head, len) = (self.n_ctx * self.head_dim, n * self.head_dim);
        for (d, s) in self
            .k
            .iter_mut()
            .zip(&src.k)
            .chain(self.v.iter_mut().zip(&src.v))
        {
            for (d, s) in d.chunks_exact_mut(head).zip(s.chunks_exact(head)) {
                d[..len].copy_from_slice(&s[..len]);
            }
        }
    }
}

impl Engine<'_> {
    /// Tells the pool which weights the region after the coming one reads first.
    fn prefetch_after<const N: usize>(&self, next: [MatRef; N]) {
        let mats = next.map(|t| self.model.matrix(t));
        let n = self.pool.n_threads();
        // SAFETY: the ranges are the model's weights; every owner of a pool that runs an
        // `Engine` (`Session`, `BatchDecoder`) calls `clear_ahead` when dropped, before its
        // `Arc<Model>` can release them.
        unsafe {
            self.pool
                .prefetch_after(&|tid| first_bytes(self.isa, &mats, n, tid))
        };
    }

    /// Run `tokens` (at most `s.n_batch`) at positions `pos0..`, filling the KV cache and
    /// `s.logits`.
    pub fn forward(
        &self,
        kv: &mut KvCache,
        s: &mut Scratch,
        tokens: &[u32],
        pos0: usize,
        mode: LogitsMode,
    ) {
        let n = tokens.len();
        self.forward_seqs(&mut [Seq { kv, pos0, n }], s, tokens, mode);
    }

    /// Run several sequences in one pass over the weights: `tokens` holds each sequence's rows
    /// in turn (`seqs[i].n` of them, at most `s.n_batch` in all). The matrix products see one
    /// batch; RoPE, the cache writes and attention are per sequence. Logits: with
    /// `LogitsMode::Last` one row per sequence (its last token), with `All` one per token.
    pub fn forward_seqs(
        &self,
        seqs: &mut [Seq<'_>],
        s: &mut Scratch,
        tokens: &[u32],
        mode: LogitsMode,
    ) {
        let m = self.model;
        let c = &m.config;
        let n = tokens.len();
        assert!(n <= s.n_batch && seqs.iter().map(|q| q.n).sum::<usize>() == n);
        assert!(seqs.iter().all(|q| q.n > 0 && q.pos0 + q.n <= q.kv.n_ctx));
        let h = c.hidden_size as usize;
        let hd = c.head_dim() as usize;
        let n_head = c.num_attention_heads as usize;
        let n_kv = c.n_kv_heads() as usize;
        let qd = n_head * hd;
        let kvd = n_kv * hd;
        let ff = c.intermediate_size as usize;
        let eps = c.rms_norm_eps;
        let (pool, isa) = (self.pool, self.isa);

        // 1. Token embeddings.
        let embd = m.matrix(m.w.token_embd);
        for (t, &tok) in tokens.iter().enumerate() {
            llama_spec::quant::dequantize(
                embd.ty,
                embd.row(tok as usize),
                &mut s.x[t * h..(t + 1) * h],
            )
            .expect("embedding type checked at load");
        }

        for (li, layer) in m.w.layers.iter().enumerate() {
            // 2. Attention block: norm, Q/K/V, RoPE, cache, attention, output projection.
            norm_rows(&s.x, &layer.attn_norm, eps, h, 0..n, &mut s.xb);
            self.prefetch_after([layer.wo]);
            matmul(
                pool,
                isa,
                &mut s.acts,
                &s.xb,
                n,
                &mut [
                    MatOut {
                        w: m.matrix(layer.wq),
                        out: &mut s.q,
                    },
                    MatOut {
                        w: m.matrix(layer.wk),
                        out: &mut s.k,
                    },
                    MatOut {
                        w: m.matrix(layer.wv),
                        out: &mut s.v,
                    },
                ],
            );
            for (out, bias, d) in [
                (&mut s.q, &layer.bq, qd),
                (&mut s.k, &layer.bk, kvd),
                (&mut s.v, &layer.bv, kvd),
            ] {
                if let Some(b) = bias {
                    for row in out[..n * d].chunks_exact_mut(d) {
                        for (x, &bi) in row.iter_mut().zip(b) {
                            *x += bi;
                        }
                    }
                }
            }
            let mut first = 0;
            for seq in seqs.iter_mut() {
                for i in 0..seq.n {
                    let (t, pos) = (first + i, seq.pos0 + i);
                    self.rope.apply(&mut s.q[t * qd..(t + 1) * qd], pos);
                    self.rope.apply(&mut s.k[t * kvd..(t + 1) * kvd], pos);
                    seq.kv.write(
                        li,
                        pos,
                        &s.k[t * kvd..(t + 1) * kvd],
                        &s.v[t * kvd..(t + 1) * kvd],
                    );
                }
                attention(
                    self.pool,
                    self.isa,
                    &Attn {
                        q: &s.q[first * qd..(first + seq.n) * qd],
                        k_cache: &seq.kv.k[li],
                        v_cache: &seq.kv.v[li],
                        n_tokens: seq.n,
                        pos0: seq.pos0,
                        n_head,
                        n_kv_head: n_kv,
                        head_dim: hd,
                        n_ctx: seq.kv.n_ctx,
                    },
                    &mut s.scores,
                    &mut s.att[first * qd..(first + seq.n) * qd],
                );
                first += seq.n;
            }
            self.prefetch_after([layer.w_gate, layer.w_up]);
            matmul(
                pool,
                isa,
                &mut s.acts,
                &s.att,
                n,
                &mut [MatOut {
                    w: m.matrix(layer.wo),
                    out: &mut s.xb2,
                }],
            );
            for (x, &d) in s.x[..n * h].iter_mut().zip(&s.xb2[..n * h]) {
                *x += d;
            }

            // 3. Feed-forward block: norm, gate/up, SwiGLU, down projection.
            norm_rows(&s.x, &layer.ffn_norm, eps, h, 0..n, &mut s.xb);
            self.prefetch_after([layer.w_down]);
            matmul(
                pool,
                isa,
                &mut s.acts,
                &s.xb,
                n,
                &mut [
                    MatOut {
                        w: m.matrix(layer.w_gate),
                        out: &mut s.gate,
                    },
                    MatOut {
                        w: m.matrix(layer.w_up),
                        out: &mut s.up,
                    },
                ],
            );
            match m.w.layers.get(li + 1) {
                Some(next) => self.prefetch_after([next.wq, next.wk, next.wv]),
                None => self.prefetch_after([m.w.output]),
            }
            for t in 0..n {
                crate::kernels::swiglu(
                    isa,
                    &mut s.gate[t * ff..(t + 1) * ff],
                    &s.up[t * ff..(t + 1) * ff],
                );
            }
            matmul(
                pool,
                isa,
                &mut s.acts,
                &s.gate,
                n,
                &mut [MatOut {
                    w: m.matrix(layer.w_down),
                    out: &mut s.xb2,
                }],
            );
            for (x, &d) in s.x[..n * h].iter_mut().zip(&s.xb2[..n * h]) {
                *x += d;
            }
        }

        // 4. Final norm and the LM head, for each sequence's last token or for all.
        let rows = match mode {
            LogitsMode::All => {
                norm_rows(&s.x, &m.w.output_norm, eps, h, 0..n, &mut s.xb);
                n
            }
            LogitsMode::Last => {
                let mut end = 0;
                for (r, seq) in seqs.iter().enumerate() {
                    end += seq.n;
                    norm_rows(
                        &s.x,
                        &m.w.output_norm,
                        eps,
                        h,
                        end - 1..end,
                        &mut s.xb[r * h..],
                    );
                }
                seqs.len()
            }
        };
        let vocab = c.vocab_size as usize;
        if s.logits.len() < rows * vocab {
            s.logits.resize(rows * vocab, 0.0);
        }
        matmul(
            pool,
            isa,
            &mut s.acts,
            &s.xb,
            rows,
            &mut [MatOut {
                w: m.matrix(m.w.output),
                out: &mut s.logits,
            }],
        );
    }
}
