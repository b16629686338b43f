//! Random initialization as transformers does it for `LlamaForCausalLM`: every matrix from
//! N(0, initializer_range), norms at 1. Seeded and backend-independent (drawn on the host).

use burn::module::Param;
use burn::prelude::*;
use llama_spec::names::{LayerTensor, TensorName};
use llama_spec::LlamaConfig;

use super::{Block, Dims, Llama};

/// SplitMix64 with Box-Muller: small, fast, reproducible everywhere.
struct Normal {
    state: u64,
    spare: Option<f64>,
}

impl Normal {
    fn new(seed: u64) -> Self {
        Self {
            state: seed ^ 0x9E37_79B9_7F4A_7C15,
            spare: None,
        }
    }

    fn uniform(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // 53 random bits in (0, 1]: never 0, so ln() is finite.
        ((z >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    fn sample(&mut self) -> f64 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        let (u1, u2) = (self.uniform(), self.uniform());
        let r = (-2.0 * u1.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        self.spare = Some(r * t.sin());
        r * t.cos()
    }
}

/// `initializer_range` from config.json (transformers' default 0.02).
pub fn initializer_range(c: &LlamaConfig) -> f64 {
    c.extra
        .get("initializer_range")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.02)
}

impl Llama {
    /// A randomly initialized model; the same seed gives the same weights on every backend.
    pub fn init(c: &LlamaConfig, seed: u64, device: &Device) -> Self {
        let std = initializer_range(c);
        let mut rng = Normal::new(seed);
        let shape = |t: TensorName| -> Vec<usize> {
            t.hf_shape(c).into_iter().map(|d| d as usize).collect()
        };
        let mut matrix = |t: TensorName| -> Param<Tensor<2>> {
            let s = shape(t);
            let v: Vec<f32> = (0..s[0] * s[1])
                .map(|_| (rng.sample() * std) as f32)
                .collect();
            Param::from_data(TensorData::new(v, [s[0], s[1]]), device)
        };
        let ones = |t: TensorName| -> Param<Tensor<1>> {
            let n = shape(t)[0];
            Param::from_data(TensorData::new(vec![1.0f32; n], [n]), device)
        };
        let embed_tokens = matrix(TensorName::TokenEmbd);
        let layers = (0..c.num_hidden_layers)
            .map(|i| {
                let l = |t| TensorName::Layer(i, t);
                Block {
                    input_layernorm: ones(l(LayerTensor::AttnNorm)),
                    q_proj: matrix(l(LayerTensor::AttnQ)),
                    k_proj: matrix(l(LayerTensor::AttnK)),
                    v_proj: matrix(l(LayerTensor::AttnV)),
                    o_proj: matrix(l(LayerTensor::AttnOutput)),
                    post_attention_layernorm: ones(l(LayerTensor::FfnNorm)),
                    gate_proj: matrix(l(LayerTensor::FfnGate)),
                    up_proj: matrix(l(LayerTensor::FfnUp)),
                    down_proj: matrix(l(LayerTensor::FfnDown)),
                }
            })
            .collect();
        let lm_head = (!c.tie_word_embeddings).then(|| matrix(TensorName::Output));
        Llama {
            embed_tokens,
            layers,
            norm: ones(TensorName::OutputNorm),
            lm_head,
            dims: Dims::new(c),
        }
    }
}
