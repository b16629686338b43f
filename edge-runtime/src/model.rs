//! [`Model`]: a memory-mapped GGUF Llama-family model (Llama, Qwen2) with its tokenizer and
//! chat template.

use std::path::Path;

use llama_spec::chat::ChatTemplate;
use llama_spec::gguf::{GgmlType, GgufFile};
use llama_spec::names::{LayerTensor, TensorName};
use llama_spec::quant;
use llama_spec::tokenizer::tokenizers::Tokenizer;
use llama_spec::tokenizer::{GgufVocab, SpecialTokens};
use llama_spec::LlamaConfig;

use crate::error::{Error, Result};
use crate::kernels::{self, matmul::QMatrix};

/// Options for [`Model::load`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Touch every weight page at load time (slower start, no page faults later).
    pub prefault: bool,
    /// Multiply straight from the file's layout: no [`repack`](kernels::repack)ed copies
    /// (faster load, and no copy in memory; slower decode on x86).
    pub keep_file_layout: bool,
}

/// The weight bytes of one type that a token's matmuls read.
#[derive(Debug, Clone, Copy)]
pub struct MatmulBytes {
    pub ty: GgmlType,
    pub bytes: usize,
    /// Columns of one matrix of this type.
    pub cols: usize,
}

/// Where a weight matrix lives in the mapped file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MatRef {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub offset: usize,
    pub len: usize,
    /// Index of its packed copy in [`Model::packed`].
    pub packed: Option<usize>,
}

pub(crate) struct Layer {
    pub attn_norm: Vec<f32>, // [hidden]
    pub wq: MatRef,          // [n_head * head_dim, hidden]
    pub wk: MatRef,          // [n_kv_head * head_dim, hidden]
    pub wv: MatRef,          // [n_kv_head * head_dim, hidden]
    /// Q/K/V biases (Qwen2; optional in any file, as in llama.cpp).
    pub bq: Option<Vec<f32>>, // [n_head * head_dim]
    pub bk: Option<Vec<f32>>, // [n_kv_head * head_dim]
    pub bv: Option<Vec<f32>>, // [n_kv_head * head_dim]
    pub wo: MatRef,          // [hidden, n_head * head_dim]
    pub ffn_norm: Vec<f32>,  // [hidden]
    pub w_gate: MatRef,      // [ffn, hidden]
    pub w_up: MatRef,        // [ffn, hidden]
    pub w_down: MatRef,      // [hidden, ffn]
}

pub(crate) struct Weights {
    pub token_embd: MatRef, // [vocab, hidden]
    pub layers: Vec<Layer>,
    pub output_norm: Vec<f32>,        // [hidden]
    pub output: MatRef,               // [vocab, hidden] (token_embd when tied)
    pub rope_freqs: Option<Vec<f32>>, // [head_dim / 2]
}

/// A loaded model: weights stay in the mmap (never copied), shared by any number of sessions
/// (`Model` is `Send + Sync`; wrap it in an `Arc`).
pub struct Model {
    file: GgufFile,
    pub config: LlamaConfig,
    pub tokenizer: Tokenizer,
    pub special: SpecialTokens,
    pub chat_template: Option<ChatTemplate>,
    pub(crate) w: Weights,
    /// Repacked copies of weight matrices, for the kernels that read them.
    packed: Vec<kernels::repack::AlignedBytes>,
    /// The bytes each token stands for (byte-level BPE decoded; empty for control tokens).
    pub(crate) token_bytes: Vec<Vec<u8>>,
    name: String,
}

impl Model {
    /// Map `path`, read its config, tokenizer and chat template, and check every tensor's type
    /// and shape against the config.
    pub fn load(path: impl AsRef<Path>, options: LoadOptions) -> Result<Self> {
        let path = path.as_ref();
        let file = GgufFile::open(path)?;
        let config = LlamaConfig::from_gguf(&file)?;
        let vocab = GgufVocab::from_gguf(&file)?;
        let tok = vocab.build(path)?;
        let chat_template = ChatTemplate::from_gguf(&file)?;
        let err = |message: String| Error::Model {
            path: path.to_path_buf(),
            message,
        };
        if config.head_dim() as usize > kernels::attention::MAX_HEAD_DIM {
            return Err(err(format!(
                "head_dim {} is above the supported {}",
                config.head_dim(),
                kernels::attention::MAX_HEAD_DIM
            )));
        }
        if vocab.tokens.len() != config.vocab_size as usize {
            return Err(err(format!(
                "{} tokens in the vocabulary, {} is {}",
                vocab.tokens.len(),
                config
                    .architecture
                    .key(llama_spec::config::keys::VOCAB_SIZE),
                config.vocab_size
            )));
        }

        let mat = |name: TensorName| -> Result<MatRef> {
            let gname = name.gguf();
            let t = file
                .tensor(&gname)
                .ok_or_else(|| err(format!("missing tensor {gname}")))?;
            let expected = name.gguf_dims(&config);
            let dims = &t.dims;
            if *dims != expected {
                return Err(err(format!(
                    "tensor {gname} has dims {dims:?}, the config implies {expected:?}"
                )));
            }
            if expected.len() == 2 && !kernels::supported(t.ggml_type) {
                return Err(err(format!(
                    "tensor {gname} has type {}, which the runtime cannot multiply",
                    t.ggml_type
                )));
            }
            let data = file.tensor_data(t);
            let offset = data.as_ptr() as usize - file.bytes().as_ptr() as usize;
            Ok(MatRef {
                ty: t.ggml_type,
                rows: expected.get(1).copied().unwrap_or(1) as usize,
                cols: expected[0] as usize,
                offset,
                len: data.len(),
                packed: None,
            })
        };
        let vector = |name: TensorName| -> Result<Vec<f32>> {
            let m = mat(name)?;
            let bytes = &file.bytes()[m.offset..m.offset + m.len];
            quant::dequantize_to_vec(m.ty, bytes, m.rows * m.cols)
                .map_err(|e| err(format!("tensor {}: {e}", name.gguf())))
        };
        // Biases are required where the architecture has them, used wherever a file has them.
        let bias = |name: TensorName| -> Result<Option<Vec<f32>>> {
            if config.architecture.qkv_bias() || file.tensor(&name.gguf()).is_some() {
                vector(name).map(Some)
            } else {
                Ok(None)
            }
        };
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let l = |t| TensorName::Layer(i, t);
                Ok(Layer {
                    attn_norm: vector(l(LayerTensor::AttnNorm))?,
                    wq: mat(l(LayerTensor::AttnQ))?,
                    wk: mat(l(LayerTensor::AttnK))?,
                    wv: mat(l(LayerTensor::AttnV))?,
                    bq: bias(l(LayerTensor::AttnQBias))?,
                    bk: bias(l(LayerTensor::AttnKBias))?,
                    bv: bias(l(LayerTensor::AttnVBias))?,
                    wo: mat(l(LayerTensor::AttnOutput))?,
                    ffn_norm: vector(l(LayerTensor::FfnNorm))?,
                    w_gate: mat(l(LayerTensor::FfnGate))?,
                    w_up: mat(l(LayerTensor::FfnUp))?,
                    w_down: mat(l(LayerTensor::FfnDown))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let token_embd = mat(TensorName::TokenEmbd)?;
        let output = if config.tie_word_embeddings {
            token_embd
        } else {
            mat(TensorName::Output)?
        };
        let rope_freqs = if config.rope_scaling.is_some() {
            Some(vector(TensorName::RopeFreqs)?)
        } else {
            None
        };
        let mut w = Weights {
            token_embd,
            layers,
            output_norm: vector(TensorName::OutputNorm)?,
            output,
            rope_freqs,
        };
        let packed = if options.keep_file_layout {
            Vec::new()
        } else {
            pack_matrices(&file, &mut w)
        };

        let dec = llama_spec::tokenizer::byte_decoder();
        let token_bytes = (0..vocab.tokens.len() as u32)
            .map(|id| vocab.token_bytes(id, &dec))
            .collect();

        if options.prefault {
            // Touch one byte per page so later decode steps never fault.
            let bytes = file.bytes();
            let mut acc = 0u8;
            for i in (0..bytes.len()).step_by(4096) {
                acc ^= bytes[i];
            }
            std::hint::black_box(acc);
        }
        let name = file
            .get("general.name")
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| {
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
        Ok(Self {
            file,
            config,
            tokenizer: tok,
            special: vocab.special,
            chat_template,
            w,
            packed,
            token_bytes,
            name,
        })
    }

    /// Bytes of repacked weight copies held in memory.
    pub fn packed_bytes(&self) -> usize {
        self.packed.iter().map(|p| p.as_slice().len()).sum()
    }

    /// `general.name`, or the file stem.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Size of the mapped file in bytes.
    pub fn file_size(&self) -> usize {
        self.file.bytes().len()
    }

    /// Parameters in the weight matrices, embeddings and norms.
    pub fn param_count(&self) -> u64 {
        self.file.tensors().iter().map(|t| t.n_elements()).sum()
    }

    /// Bytes of weights read per decoded token (every matrix once, plus one embedding row).
    pub fn bytes_per_token(&self) -> usize {
        let w = &self.w;
        let embd_row = w.token_embd.len / w.token_embd.rows.max(1);
        embd_row + self.matmul_bytes().iter().map(|b| b.bytes).sum::<usize>()
    }

    /// Weight bytes the matmuls of one token read, per weight type (the output head included),
    /// largest first, with the width (`cols`) of one matrix of that type.
    pub fn matmul_bytes(&self) -> Vec<MatmulBytes> {
        let w = &self.w;
        let mut by_type: Vec<MatmulBytes> = Vec::new();
        let mats = w
            .layers
            .iter()
            .flat_map(|l| [l.wq, l.wk, l.wv, l.wo, l.w_gate, l.w_up, l.w_down]);
        for m in mats.chain([w.output]) {
            match by_type.iter_mut().find(|b| b.ty == m.ty) {
                Some(b) => b.bytes += m.len,
                None => by_type.push(MatmulBytes {
                    ty: m.ty,
                    bytes: m.len,
                    cols: m.cols,
                }),
            }
        }
        by_type.sort_by_key(|b| std::cmp::Reverse(b.bytes));
        by_type
    }

    pub(crate) fn matrix(&self, m: MatRef) -> QMatrix<'_> {
        QMatrix {
            ty: m.ty,
            rows: m.rows,
            cols: m.cols,
            data: &self.file.bytes()[m.offset..m.offset + m.len],
            packed: m.packed.map(|i| self.packed[i].as_slice()),
        }
    }

    /// Tokenize `text`; special-token texts become their ids. With `add_bos`, BOS is prepended
    /// when the model's metadata asks for it.
    pub fn tokenize(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::Tokenize(e.to_string()))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if add_bos && self.special.add_bos {
            if let Some(b) = self.special.bos {
                ids.push(b);
            }
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// The bytes token `id` stands for (empty for control tokens).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.token_bytes.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// Lossy text of a token sequence (for display and tests).
    pub fn detokenize(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&i| self.token_bytes(i).to_vec())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// True for EOS/EOT/EOM: generation ends here.
    pub fn is_stop_token(&self, id: u32) -> bool {
        self.special.stop_ids().contains(&id)
    }

    /// Render `messages` with the model's chat template (Llama-3's when the file has none).
    pub fn apply_chat_template(
        &self,
        messages: &[llama_spec::chat::Message],
        add_generation_prompt: bool,
    ) -> Result<String> {
        match &self.chat_template {
            Some(t) => Ok(t.render(messages, add_generation_prompt)?),
            None => {
                let bos = self
                    .special
                    .bos
                    .map(|b| self.tokenizer.id_to_token(b).unwrap_or_default())
                    .unwrap_or_default();
                let t = ChatTemplate::new(
                    llama_spec::chat::LLAMA3_TEMPLATE,
                    &bos,
                    "<|eot_id|>",
                    "built-in Llama-3 template",
                )?;
                Ok(t.render(messages, add_generation_prompt)?)
            }
        }
    }
}

/// Packs every matrix that this CPU has packed kernels for (the output head included; a tied
/// head's embedding rows are still read from the file) and points its [`MatRef`] at the copy.
fn pack_matrices(file: &GgufFile, w: &mut Weights) -> Vec<kernels::repack::AlignedBytes> {
    let isa = kernels::Isa::detect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut packed = Vec::new();
    let mut pack = |m: &mut MatRef| {
        if isa.packed16(m.ty).is_none() {
            return;
        }
        let data = &file.bytes()[m.offset..m.offset + m.len];
        if let Some(p) = kernels::repack::pack(m.ty, data, m.rows, m.cols, threads) {
            m.packed = Some(packed.len());
            packed.push(p);
            // The copy is what the kernels read: the file's pages need not stay resident (a
            // tied head's embedding rows fault back in when a token's row is looked up).
            file.release_pages(m.offset..m.offset + m.len);
        }
    };
    for l in &mut w.layers {
        for m in [
            &mut l.wq,
            &mut l.wk,
            &mut l.wv,
            &mut l.wo,
            &mut l.w_gate,
            &mut l.w_up,
            &mut l.w_down,
        ] {
            pack(m);
        }
    }
    pack(&mut w.output);
    packed
}

// Compile-time check of the promise in the docs.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Model>();
};
