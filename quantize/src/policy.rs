//! Which ggml type each tensor gets: llama.cpp's `llama-quantize` recipe (`llama_tensor_get_type`
//! in `src/llama-quant.cpp`) for the Llama architecture, so that a `--type q4_k_m` file has the
//! same tensor types as llama.cpp's.

use llama_spec::names::{LayerTensor, TensorName};
use llama_spec::GgmlType;

/// A whole-file type (`general.file_type`, llama.cpp's `llama_ftype`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q4KS,
    Q4KM,
    Q5KS,
    Q5KM,
    Q6K,
}

impl FileType {
    pub const ALL: [FileType; 13] = [
        FileType::F32,
        FileType::F16,
        FileType::BF16,
        FileType::Q8_0,
        FileType::Q4_0,
        FileType::Q4_1,
        FileType::Q5_0,
        FileType::Q5_1,
        FileType::Q4KS,
        FileType::Q4KM,
        FileType::Q5KS,
        FileType::Q5KM,
        FileType::Q6K,
    ];

    /// The name on the command line (`q4_k_m`), as llama-quantize spells it lower-cased.
    pub fn name(self) -> &'static str {
        match self {
            FileType::F32 => "f32",
            FileType::F16 => "f16",
            FileType::BF16 => "bf16",
            FileType::Q8_0 => "q8_0",
            FileType::Q4_0 => "q4_0",
            FileType::Q4_1 => "q4_1",
            FileType::Q5_0 => "q5_0",
            FileType::Q5_1 => "q5_1",
            FileType::Q4KS => "q4_k_s",
            FileType::Q4KM => "q4_k_m",
            FileType::Q5KS => "q5_k_s",
            FileType::Q5KM => "q5_k_m",
            FileType::Q6K => "q6_k",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        let s = s.to_ascii_lowercase();
        Self::ALL.into_iter().find(|t| t.name() == s)
    }

    /// `general.file_type` (llama.cpp's `LLAMA_FTYPE_*`).
    pub fn llama_ftype(self) -> u32 {
        match self {
            FileType::F32 => 0,
            FileType::F16 => 1,
            FileType::Q4_0 => 2,
            FileType::Q4_1 => 3,
            FileType::Q8_0 => 7,
            FileType::Q5_0 => 8,
            FileType::Q5_1 => 9,
            FileType::Q4KS => 14,
            FileType::Q4KM => 15,
            FileType::Q5KS => 16,
            FileType::Q5KM => 17,
            FileType::Q6K => 18,
            FileType::BF16 => 32,
        }
    }

    /// The type most weights get.
    pub fn default_type(self) -> GgmlType {
        match self {
            FileType::F32 => GgmlType::F32,
            FileType::F16 => GgmlType::F16,
            FileType::BF16 => GgmlType::BF16,
            FileType::Q8_0 => GgmlType::Q8_0,
            FileType::Q4_0 => GgmlType::Q4_0,
            FileType::Q4_1 => GgmlType::Q4_1,
            FileType::Q5_0 => GgmlType::Q5_0,
            FileType::Q5_1 => GgmlType::Q5_1,
            FileType::Q4KS | FileType::Q4KM => GgmlType::Q4_K,
            FileType::Q5KS | FileType::Q5KM => GgmlType::Q5_K,
            FileType::Q6K => GgmlType::Q6_K,
        }
    }

    fn is_quantized(self) -> bool {
        !matches!(self, FileType::F32 | FileType::F16 | FileType::BF16)
    }
}

/// A user override: tensors whose GGUF name matches `pattern` (`*` matches any run of
/// characters) get `ty` (llama-quantize's `--tensor-type`).
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub pattern: String,
    pub ty: GgmlType,
}

impl Override {
    /// `PATTERN=TYPE`, e.g. `blk.*.attn_v.weight=q8_0` or `output.weight=f16`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (pattern, ty) = s
            .rsplit_once('=')
            .ok_or_else(|| format!("--keep {s:?}: expected PATTERN=TYPE"))?;
        let ty = GgmlType::from_name(ty)
            .ok_or_else(|| format!("--keep {s:?}: unknown ggml type {ty:?}"))?;
        Ok(Self {
            pattern: pattern.to_string(),
            ty,
        })
    }

    pub fn matches(&self, name: &str) -> bool {
        glob(self.pattern.as_bytes(), name.as_bytes())
    }
}

fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((c, rest)) => s.first() == Some(c) && glob(rest, &s[1..]),
    }
}

/// What the recipe needs to know about the model.
#[derive(Debug, Clone)]
pub struct Policy {
    pub ftype: FileType,
    pub n_layers: u32,
    /// No `output.weight`: the token embedding doubles as the output head.
    pub tied_embeddings: bool,
    pub overrides: Vec<Override>,
}

/// Layers that get more bits in the `_M` mixes: the first and last eighth, and every third
/// layer in between.
fn use_more_bits(i_layer: i64, n_layers: i64) -> bool {
    i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2
}

impl Policy {
    /// llama.cpp quantizes 2-D (or more) `*weight` tensors other than norms; the rest keep
    /// their type (F32 when converting).
    pub fn quantizable(name: &str, n_dims: usize) -> bool {
        n_dims >= 2 && name.ends_with("weight") && !name.contains("_norm.weight")
    }

    /// The type of the GGUF tensor `name` with `ne0` columns (`ne[0]`, elements per row) and
    /// `n_dims` dimensions.
    pub fn tensor_type(&self, name: &str, ne0: u64, n_dims: usize) -> GgmlType {
        let ftype = self.ftype;
        // 1-D tensors (norms, rope_freqs) and anything not a `.weight` stay F32.
        if !Self::quantizable(name, n_dims) {
            return GgmlType::F32;
        }
        if !ftype.is_quantized() {
            return ftype.default_type();
        }
        let mut ty = ftype.default_type();
        if let Some(o) = self.overrides.iter().find(|o| o.matches(name)) {
            ty = o.ty;
        } else {
            // Tensor roles through the one name map; names outside it keep the default.
            let n = i64::from(self.n_layers);
            match TensorName::from_gguf(name) {
                Some(t @ (TensorName::Output | TensorName::TokenEmbd))
                    if t == TensorName::Output || self.tied_embeddings =>
                {
                    if !ne0.is_multiple_of(ty.block_size()) {
                        ty = GgmlType::Q8_0;
                    } else if ty != GgmlType::Q8_0 {
                        ty = GgmlType::Q6_K;
                    }
                }
                Some(TensorName::Layer(i, LayerTensor::AttnV)) => {
                    let i = i64::from(i);
                    if matches!(ftype, FileType::Q4KM | FileType::Q5KM) && use_more_bits(i, n) {
                        ty = GgmlType::Q6_K;
                    } else if ftype == FileType::Q4KS && i < 4 {
                        ty = GgmlType::Q5_K;
                    }
                    // llama.cpp's LLM_TYPE_70B (80 layers): attn_v is 8x smaller than attn_q.
                    if self.n_layers == 80 && matches!(ty, GgmlType::Q3_K | GgmlType::Q4_K) {
                        ty = GgmlType::Q5_K;
                    }
                }
                Some(TensorName::Layer(i, LayerTensor::FfnDown)) => {
                    let i = i64::from(i);
                    if matches!(ftype, FileType::Q4KM | FileType::Q5KM) && use_more_bits(i, n) {
                        ty = GgmlType::Q6_K;
                    } else if ftype == FileType::Q4KS && i < n / 8 {
                        ty = GgmlType::Q5_K;
                    }
                }
                _ => {}
            }
        }
        fallback(ty, ne0)
    }
}

/// Rows that are not a whole number of blocks get a type with smaller blocks.
fn fallback(ty: GgmlType, ne0: u64) -> GgmlType {
    if ne0.is_multiple_of(ty.block_size()) {
        return ty;
    }
    let next = match ty {
        GgmlType::Q2_K | GgmlType::Q3_K => GgmlType::Q4_0,
        GgmlType::Q4_K => GgmlType::Q5_0,
        GgmlType::Q5_K => GgmlType::Q5_1,
        GgmlType::Q6_K => GgmlType::Q8_0,
        _ => GgmlType::F16,
    };
    if ne0.is_multiple_of(next.block_size()) {
        next
    } else {
        GgmlType::F16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(ftype: FileType, n_layers: u32, tied: bool) -> Policy {
        Policy {
            ftype,
            n_layers,
            tied_embeddings: tied,
            overrides: Vec::new(),
        }
    }

    #[test]
    fn q4_k_m_on_llama3_8b() {
        // Llama-3-8B: 32 layers, 4096 wide, untied head. llama-quantize gives attn_v and
        // ffn_down Q6_K in layers 0-3, 28-31 and every third layer from 6; the rest Q4_K.
        let p = policy(FileType::Q4KM, 32, false);
        let more: Vec<u32> = (0..32)
            .filter(|&i| {
                p.tensor_type(&format!("blk.{i}.attn_v.weight"), 4096, 2) == GgmlType::Q6_K
            })
            .collect();
        assert_eq!(
            more,
            [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
        );
        for i in 0..32 {
            assert_eq!(
                p.tensor_type(&format!("blk.{i}.ffn_down.weight"), 14336, 2),
                p.tensor_type(&format!("blk.{i}.attn_v.weight"), 4096, 2)
            );
            assert_eq!(
                p.tensor_type(&format!("blk.{i}.attn_q.weight"), 4096, 2),
                GgmlType::Q4_K
            );
            assert_eq!(
                p.tensor_type(&format!("blk.{i}.attn_norm.weight"), 4096, 1),
                GgmlType::F32
            );
        }
        assert_eq!(p.tensor_type("output.weight", 4096, 2), GgmlType::Q6_K);
        assert_eq!(p.tensor_type("token_embd.weight", 4096, 2), GgmlType::Q4_K);
        assert_eq!(p.tensor_type("rope_freqs.weight", 64, 1), GgmlType::F32);
    }

    #[test]
    fn fallbacks_for_rows_that_are_not_whole_blocks() {
        // SmolLM2-135M: 576 columns (not a multiple of 256), tied embeddings.
        let p = policy(FileType::Q4KM, 30, true);
        assert_eq!(p.tensor_type("token_embd.weight", 576, 2), GgmlType::Q8_0);
        assert_eq!(p.tensor_type("blk.5.attn_q.weight", 576, 2), GgmlType::Q5_0);
        assert_eq!(p.tensor_type("blk.0.attn_v.weight", 576, 2), GgmlType::Q8_0);
        assert_eq!(
            p.tensor_type("blk.0.ffn_down.weight", 1536, 2),
            GgmlType::Q6_K
        );
        assert_eq!(
            p.tensor_type("blk.4.ffn_down.weight", 1536, 2),
            GgmlType::Q4_K
        );
        let q4_0 = policy(FileType::Q4_0, 30, true);
        assert_eq!(
            q4_0.tensor_type("token_embd.weight", 576, 2),
            GgmlType::Q8_0
        );
        assert_eq!(fallback(GgmlType::Q4_0, 40), GgmlType::F16);
    }

    #[test]
    fn float_types_and_overrides() {
        let p = policy(FileType::F16, 2, false);
        assert_eq!(p.tensor_type("output.weight", 64, 2), GgmlType::F16);
        assert_eq!(p.tensor_type("blk.0.ffn_norm.weight", 64, 1), GgmlType::F32);
        let mut p = policy(FileType::Q4_0, 2, false);
        p.overrides
            .push(Override::parse("blk.*.attn_v.weight=q8_0").expect("parse"));
        assert_eq!(p.tensor_type("blk.1.attn_v.weight", 64, 2), GgmlType::Q8_0);
        assert_eq!(p.tensor_type("blk.1.attn_k.weight", 64, 2), GgmlType::Q4_0);
        assert!(Override::parse("x=q9").is_err());
        assert!(Override::parse("nothing").is_err());
        assert_eq!(FileType::parse("Q4_K_M"), Some(FileType::Q4KM));
        assert_eq!(FileType::parse("q3_k"), None);
    }
}
