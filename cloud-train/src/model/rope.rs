//! Rotary position embeddings in HF's layout: each head's dimensions are split in halves
//! (`rotate_half`), not interleaved pairs; Q/K rows are only permuted at the GGUF boundary.

use burn::prelude::*;
use llama_spec::LlamaConfig;

/// Per-frequency inverse wavelengths, `head_dim / 2` of them, llama3 scaling applied.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
}

impl Rope {
    pub fn new(c: &LlamaConfig) -> Self {
        let dim = c.head_dim() as usize;
        // As transformers: the base frequencies in f32, then divided by llama3's factors.
        let factors = c.rope_freqs().unwrap_or_else(|| vec![1.0; dim / 2]);
        let inv_freq = (0..dim / 2)
            .map(|i| 1.0f32 / c.rope_theta.powf((2 * i) as f32 / dim as f32) / factors[i])
            .collect();
        Self { inv_freq }
    }

    pub fn half_dim(&self) -> usize {
        self.inv_freq.len()
    }

    /// `cos` and `sin` tables for positions `start..start + len`.
    ///
    /// # Shapes
    /// - returns: `[len, head_dim / 2]` each
    pub fn tables(&self, start: usize, len: usize, device: &Device) -> (Tensor<2>, Tensor<2>) {
        let half = self.half_dim();
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for p in start..start + len {
            for &f in &self.inv_freq {
                // The angle is rounded to f32 as transformers computes it; cos/sin are exact.
                let angle = f64::from(p as f32 * f);
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        (
            Tensor::from_data(TensorData::new(cos, [len, half]), device),
            Tensor::from_data(TensorData::new(sin, [len, half]), device),
        )
    }
}

/// Rotate each head's halves: `[x1, x2] -> [x1 cos - x2 sin, x2 cos + x1 sin]`.
///
/// # Shapes
/// - x: `[batch, heads, seq, head_dim]`
/// - cos, sin: `[seq, head_dim / 2]`
/// - returns: `[batch, heads, seq, head_dim]`
pub fn apply_rope(x: Tensor<4>, cos: &Tensor<2>, sin: &Tensor<2>) -> Tensor<4> {
    let half = x.dims()[3] / 2;
    let cos = cos.clone().unsqueeze::<4>();
    let sin = sin.clone().unsqueeze::<4>();
    let x1 = x.clone().narrow(3, 0, half);
    let x2 = x.narrow(3, half, half);
    let r1 = x1.clone() * cos.clone() - x2.clone() * sin.clone();
    let r2 = x2 * cos + x1 * sin;
    Tensor::cat(vec![r1, r2], 3)
}
