//! The one tensor-name map: HF (`model.layers.3.self_attn.q_proj.weight`), GGUF
//! (`blk.3.attn_q.weight`) and the internal [`TensorName`], plus expected shapes and the Q/K
//! RoPE row permutation that llama.cpp's converter applies at the HF boundary.

use crate::config::LlamaConfig;

pub const TENSOR_MAP_GGUF_ROPE_FREQS: &str = "rope_freqs.weight";

/// A tensor inside one transformer block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerTensor {
    AttnNorm,
    AttnQ,
    AttnK,
    AttnV,
    AttnOutput,
    FfnNorm,
    FfnGate,
    FfnUp,
    FfnDown,
    /// Qwen2's Q/K/V projection biases (`[out]`).
    AttnQBias,
    AttnKBias,
    AttnVBias,
}

impl LayerTensor {
    pub const ALL: [LayerTensor; 9] = [
        LayerTensor::AttnNorm,
        LayerTensor::AttnQ,
        LayerTensor::AttnK,
        LayerTensor::AttnV,
        LayerTensor::AttnOutput,
        LayerTensor::FfnNorm,
        LayerTensor::FfnGate,
        LayerTensor::FfnUp,
        LayerTensor::FfnDown,
    ];

    /// The tensors of a block with Q/K/V biases, beyond [`Self::ALL`].
    pub const QKV_BIASES: [LayerTensor; 3] = [
        LayerTensor::AttnQBias,
        LayerTensor::AttnKBias,
        LayerTensor::AttnVBias,
    ];

    /// (HF suffix after `model.layers.N.`, GGUF suffix after `blk.N.`).
    const fn names(self) -> (&'static str, &'static str) {
        match self {
            LayerTensor::AttnNorm => ("input_layernorm.weight", "attn_norm.weight"),
            LayerTensor::AttnQ => ("self_attn.q_proj.weight", "attn_q.weight"),
            LayerTensor::AttnK => ("self_attn.k_proj.weight", "attn_k.weight"),
            LayerTensor::AttnV => ("self_attn.v_proj.weight", "attn_v.weight"),
            LayerTensor::AttnOutput => ("self_attn.o_proj.weight", "attn_output.weight"),
            LayerTensor::FfnNorm => ("post_attention_layernorm.weight", "ffn_norm.weight"),
            LayerTensor::FfnGate => ("mlp.gate_proj.weight", "ffn_gate.weight"),
            LayerTensor::FfnUp => ("mlp.up_proj.weight", "ffn_up.weight"),
            LayerTensor::FfnDown => ("mlp.down_proj.weight", "ffn_down.weight"),
            LayerTensor::AttnQBias => ("self_attn.q_proj.bias", "attn_q.bias"),
            LayerTensor::AttnKBias => ("self_attn.k_proj.bias", "attn_k.bias"),
            LayerTensor::AttnVBias => ("self_attn.v_proj.bias", "attn_v.bias"),
        }
    }
}

/// Every tensor of a Llama model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorName {
    TokenEmbd,
    OutputNorm,
    /// The LM head; absent when `tie_word_embeddings`.
    Output,
    /// Llama-3 rope frequency factors; GGUF only (computed from config.json on the HF side).
    RopeFreqs,
    Layer(u32, LayerTensor),
}

impl TensorName {
    pub fn hf(self) -> Option<String> {
        Some(match self {
            TensorName::TokenEmbd => "model.embed_tokens.weight".into(),
            TensorName::OutputNorm => "model.norm.weight".into(),
            TensorName::Output => "lm_head.weight".into(),
            TensorName::RopeFreqs => return None,
            TensorName::Layer(i, t) => format!("model.layers.{i}.{}", t.names().0),
        })
    }

    pub fn gguf(self) -> String {
        match self {
            TensorName::TokenEmbd => "token_embd.weight".into(),
            TensorName::OutputNorm => "output_norm.weight".into(),
            TensorName::Output => "output.weight".into(),
            TensorName::RopeFreqs => TENSOR_MAP_GGUF_ROPE_FREQS.into(),
            TensorName::Layer(i, t) => format!("blk.{i}.{}", t.names().1),
        }
    }

    pub fn from_hf(name: &str) -> Option<Self> {
        match name {
            "model.embed_tokens.weight" => return Some(TensorName::TokenEmbd),
            "model.norm.weight" => return Some(TensorName::OutputNorm),
            "lm_head.weight" => return Some(TensorName::Output),
            _ => {}
        }
        let rest = name.strip_prefix("model.layers.")?;
        Self::layer(rest, |t| t.names().0)
    }

    pub fn from_gguf(name: &str) -> Option<Self> {
        match name {
            "token_embd.weight" => return Some(TensorName::TokenEmbd),
            "output_norm.weight" => return Some(TensorName::OutputNorm),
            "output.weight" => return Some(TensorName::Output),
            TENSOR_MAP_GGUF_ROPE_FREQS => return Some(TensorName::RopeFreqs),
            _ => {}
        }
        let rest = name.strip_prefix("blk.")?;
        Self::layer(rest, |t| t.names().1)
    }

    fn layer(rest: &str, suffix: impl Fn(LayerTensor) -> &'static str) -> Option<Self> {
        let (idx, tail) = rest.split_once('.')?;
        // Reject "01", "+1" and the like: one spelling per tensor.
        if idx.is_empty()
            || !idx.bytes().all(|b| b.is_ascii_digit())
            || (idx.len() > 1 && idx.starts_with('0'))
        {
            return None;
        }
        let i: u32 = idx.parse().ok()?;
        LayerTensor::ALL
            .into_iter()
            .chain(LayerTensor::QKV_BIASES)
            .find(|&t| suffix(t) == tail)
            .map(|t| TensorName::Layer(i, t))
    }

    /// Shape in HF (row-major, `[out, in]`) order. GGUF dims are the reverse.
    pub fn hf_shape(self, c: &LlamaConfig) -> Vec<u64> {
        let (h, ff, v) = (
            u64::from(c.hidden_size),
            u64::from(c.intermediate_size),
            u64::from(c.vocab_size),
        );
        let hd = u64::from(c.head_dim());
        let (nh, nkv) = (u64::from(c.num_attention_heads), u64::from(c.n_kv_heads()));
        match self {
            TensorName::TokenEmbd | TensorName::Output => vec![v, h],
            TensorName::OutputNorm => vec![h],
            TensorName::RopeFreqs => vec![hd / 2],
            TensorName::Layer(_, t) => match t {
                LayerTensor::AttnNorm | LayerTensor::FfnNorm => vec![h],
                LayerTensor::AttnQ => vec![nh * hd, h],
                LayerTensor::AttnK | LayerTensor::AttnV => vec![nkv * hd, h],
                LayerTensor::AttnOutput => vec![h, nh * hd],
                LayerTensor::FfnGate | LayerTensor::FfnUp => vec![ff, h],
                LayerTensor::FfnDown => vec![h, ff],
                LayerTensor::AttnQBias => vec![nh * hd],
                LayerTensor::AttnKBias | LayerTensor::AttnVBias => vec![nkv * hd],
            },
        }
    }

    /// Shape in GGUF/ggml order (`dims[0]` contiguous).
    pub fn gguf_dims(self, c: &LlamaConfig) -> Vec<u64> {
        let mut s = self.hf_shape(c);
        s.reverse();
        s
    }

    /// Heads whose rows llama.cpp's converter permutes for its RoPE layout, if any (only for
    /// the pair-wise RoPE of Llama files).
    pub fn rope_permute_heads(self, c: &LlamaConfig) -> Option<u32> {
        if c.architecture.rope_style() != crate::config::RopeStyle::AdjacentPairs {
            return None;
        }
        match self {
            TensorName::Layer(_, LayerTensor::AttnQ) => Some(c.num_attention_heads),
            TensorName::Layer(_, LayerTensor::AttnK) => Some(c.n_kv_heads()),
            _ => None,
        }
    }

    /// Every tensor a model with this config has, in llama.cpp's file order.
    pub fn all(c: &LlamaConfig) -> Vec<TensorName> {
        let mut v = vec![TensorName::TokenEmbd];
        if c.rope_scaling.is_some() {
            v.push(TensorName::RopeFreqs);
        }
        for i in 0..c.num_hidden_layers {
            v.extend(LayerTensor::ALL.iter().map(|&t| TensorName::Layer(i, t)));
            if c.architecture.qkv_bias() {
                v.extend(LayerTensor::QKV_BIASES.map(|t| TensorName::Layer(i, t)));
            }
        }
        v.push(TensorName::OutputNorm);
        if !c.tie_word_embeddings {
            v.push(TensorName::Output);
        }
        v
    }
}

/// The permutation llama.cpp's `convert_hf_to_gguf.py` applies to Q and K weights: within each
/// head, rows `[half 0 | half 1]` become interleaved pairs, turning HF's rotate-half RoPE into
/// ggml's adjacent-pair RoPE. `rows` is split into `n_head` heads; each row is `row_bytes` long
/// (so any element type, even a quantized row, can be permuted).
pub fn permute_qk_rows(src: &[u8], row_bytes: usize, n_head: usize) -> Vec<u8> {
    permute_impl(src, row_bytes, n_head, false)
}

/// The inverse of [`permute_qk_rows`] (GGUF back to HF).
pub fn unpermute_qk_rows(src: &[u8], row_bytes: usize, n_head: usize) -> Vec<u8> {
    permute_impl(src, row_bytes, n_head, true)
}

/// [`permute_qk_rows`] (or, with `inverse`, its inverse) on f32 rows of `row_len` values.
pub fn permute_qk_f32(values: &[f32], row_len: usize, n_head: usize, inverse: bool) -> Vec<f32> {
    let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    permute_impl(&bytes, row_len * 4, n_head, inverse)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn permute_impl(src: &[u8], row_bytes: usize, n_head: usize, inverse: bool) -> Vec<u8> {
    let rows = src.len() / row_bytes.max(1);
    let head_dim = rows / n_head.max(1);
    let half = head_dim / 2;
    let mut out = vec![0u8; src.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                // HF row h*hd + j*half + i  <->  GGUF row h*hd + 2*i + j
                let hf = h * head_dim + j * half + i;
                let gg = h * head_dim + 2 * i + j;
                let (from, to) = if inverse { (gg, hf) } else { (hf, gg) };
                out[to * row_bytes..(to + 1) * row_bytes]
                    .copy_from_slice(&src[from * row_bytes..(from + 1) * row_bytes]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LlamaConfig {
        serde_json::from_str(
            r#"{"vocab_size": 32, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
                "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}"#,
        )
        .expect("config")
    }

    #[test]
    fn every_name_maps_both_ways() {
        let c = cfg();
        let names = TensorName::all(&c);
        assert_eq!(names.len(), 1 + 2 * 9 + 1 + 1);
        for n in names {
            assert_eq!(TensorName::from_gguf(&n.gguf()), Some(n));
            let hf = n.hf().expect("hf name");
            assert_eq!(TensorName::from_hf(&hf), Some(n), "{hf}");
        }
        assert_eq!(
            TensorName::from_gguf("blk.7.ffn_down.weight"),
            Some(TensorName::Layer(7, LayerTensor::FfnDown))
        );
        assert_eq!(
            TensorName::from_hf("model.layers.12.self_attn.k_proj.weight").map(|n| n.gguf()),
            Some("blk.12.attn_k.weight".to_string())
        );
        for bad in [
            "blk.01.attn_q.weight",
            "blk..attn_q.weight",
            "blk.1.attn_q",
            "model.layers.x.mlp.up_proj.weight",
        ] {
            assert_eq!(
                TensorName::from_gguf(bad).or(TensorName::from_hf(bad)),
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn shapes_follow_gqa() {
        let c = cfg();
        assert_eq!(
            TensorName::Layer(0, LayerTensor::AttnQ).hf_shape(&c),
            vec![16, 16]
        );
        assert_eq!(
            TensorName::Layer(0, LayerTensor::AttnK).hf_shape(&c),
            vec![8, 16]
        );
        assert_eq!(
            TensorName::Layer(0, LayerTensor::FfnDown).gguf_dims(&c),
            vec![24, 16]
        );
    }

    /// The permutation equals the numpy expression in convert_hf_to_gguf.py:
    /// `w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2).reshape(rows, cols)`.
    #[test]
    fn permutation_matches_converter_and_round_trips() {
        let (n_head, head_dim) = (3usize, 8usize);
        let rows = n_head * head_dim;
        let src: Vec<u8> = (0..rows as u8).collect(); // one byte per row: the row's HF index
        let p = permute_qk_rows(&src, 1, n_head);
        let half = head_dim / 2;
        let mut expected = Vec::new();
        for h in 0..n_head {
            for i in 0..half {
                for j in 0..2 {
                    expected.push((h * head_dim + j * half + i) as u8);
                }
            }
        }
        assert_eq!(p, expected);
        assert_eq!(&p[..8], &[0, 4, 1, 5, 2, 6, 3, 7]);
        assert_eq!(unpermute_qk_rows(&p, 1, n_head), src);
        // Multi-byte rows move as a unit.
        let wide: Vec<u8> = (0..(rows * 4) as u32).map(|x| x as u8).collect();
        assert_eq!(
            unpermute_qk_rows(&permute_qk_rows(&wide, 4, n_head), 4, n_head),
            wide
        );
    }
}
