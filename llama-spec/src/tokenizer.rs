//! Tokenizers as `tokenizers` 0.23 [`Tokenizer`]s, built from an HF `tokenizer.json` or from
//! the `tokenizer.ggml.*` metadata of a GGUF file (byte-level BPE, `model = "gpt2"`, or
//! SentencePiece, `model = "llama"`: Llama-2, Mistral, TinyLlama), and the reverse conversion
//! used when exporting GGUF.

use std::path::{Path, PathBuf};

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer};

use crate::gguf::{ArrayValue, GgufFile, Metadata, MetadataValue};

pub use tokenizers;

/// GGUF metadata keys of the tokenizer.
pub mod keys {
    pub const MODEL: &str = "tokenizer.ggml.model";
    pub const PRE: &str = "tokenizer.ggml.pre";
    pub const TOKENS: &str = "tokenizer.ggml.tokens";
    pub const TOKEN_TYPE: &str = "tokenizer.ggml.token_type";
    pub const MERGES: &str = "tokenizer.ggml.merges";
    pub const SCORES: &str = "tokenizer.ggml.scores";
    pub const ADD_SPACE_PREFIX: &str = "tokenizer.ggml.add_space_prefix";
    pub const BOS_ID: &str = "tokenizer.ggml.bos_token_id";
    pub const EOS_ID: &str = "tokenizer.ggml.eos_token_id";
    pub const EOT_ID: &str = "tokenizer.ggml.eot_token_id";
    pub const EOM_ID: &str = "tokenizer.ggml.eom_token_id";
    pub const UNK_ID: &str = "tokenizer.ggml.unknown_token_id";
    pub const PAD_ID: &str = "tokenizer.ggml.padding_token_id";
    pub const ADD_BOS: &str = "tokenizer.ggml.add_bos_token";
    pub const ADD_EOS: &str = "tokenizer.ggml.add_eos_token";
    pub const CHAT_TEMPLATE: &str = "tokenizer.chat_template";
}

/// llama.cpp's token types (`llama_token_type`).
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const CONTROL: i32 = 3;
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}

/// The Llama-3 pre-tokenizer regex, as in Meta's tokenizer.json.
pub const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The Qwen2 pre-tokenizer regex, as in Qwen2's tokenizer.json: Llama-3's with single digits.
pub const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// First id that Llama-3 reserves for special tokens.
pub const LLAMA3_FIRST_SPECIAL: u32 = 128_000;

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

fn invalid(path: &Path, message: impl Into<String>) -> TokenizerError {
    TokenizerError::Invalid {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Special token ids and flags a runtime needs beyond the tokenizer itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// End of turn (`<|eot_id|>`, `<|im_end|>`): generation stops here too.
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub pad: Option<u32>,
    pub add_bos: bool,
}

impl SpecialTokens {
    /// Ids at which generation stops.
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut v: Vec<u32> = [self.eos, self.eot, self.eom]
            .into_iter()
            .flatten()
            .collect();
        v.dedup();
        v
    }
}

/// The pre-tokenizer families we build, keyed by llama.cpp's `tokenizer.ggml.pre` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// Llama-3 (`llama-bpe` and the other names llama.cpp maps to its LLAMA3 type): the
    /// Llama-3 regex, BPE with `ignore_merges` (a word in the vocabulary is one token).
    Llama3,
    /// `smaug-bpe` and `dbrx`: the Llama-3 regex, plain BPE (merges applied to every word).
    /// llama.cpp's converter labels a Llama-3 tokenizer so when its tokenizer.json has no BOS
    /// post-processor.
    Smaug,
    /// Qwen2 (`qwen2` and the names llama.cpp gives its rule): the Qwen2 regex, plain BPE.
    Qwen2,
    /// SmolLM (`smollm`): single digits split off, then GPT-2 byte-level regex.
    SmolLm,
    /// GPT-2 (`gpt-2`): the GPT-2 byte-level regex.
    Gpt2,
}

impl PreTokenizer {
    /// Every `tokenizer.ggml.pre` name that [`Self::from_gguf_name`] accepts: the names
    /// llama.cpp (`llama-vocab.cpp`) gives these rules.
    pub const GGUF_NAMES: &'static [&'static str] = &[
        "llama-bpe",
        "llama3",
        "llama-v3",
        "falcon3",
        "falcon-h1",
        "pixtral",
        "midm-2.0",
        "lfm2",
        "jina-v5-nano",
        "smaug-bpe",
        "dbrx",
        "qwen2",
        "deepseek-r1-qwen",
        "megrez",
        "kormo",
        "f2llmv2",
        "smollm",
        "gpt-2",
        "default",
    ];

    pub fn from_gguf_name(name: &str) -> Option<Self> {
        match name {
            "llama-bpe" | "llama3" | "llama-v3" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" | "jina-v5-nano" => Some(Self::Llama3),
            "smaug-bpe" | "dbrx" => Some(Self::Smaug),
            "qwen2" | "deepseek-r1-qwen" | "megrez" | "kormo" | "f2llmv2" => Some(Self::Qwen2),
            "smollm" => Some(Self::SmolLm),
            "gpt-2" | "default" => Some(Self::Gpt2),
            _ => None,
        }
    }

    /// Whether the tokenizer uses the Llama-3 split rule.
    fn llama3_split(self) -> bool {
        matches!(self, Self::Llama3 | Self::Smaug)
    }

    pub fn gguf_name(self) -> &'static str {
        match self {
            Self::Llama3 => "llama-bpe",
            Self::Smaug => "smaug-bpe",
            Self::Qwen2 => "qwen2",
            Self::SmolLm => "smollm",
            Self::Gpt2 => "gpt-2",
        }
    }

    fn build(self) -> Result<PreTokenizerWrapper, String> {
        Ok(match self {
            Self::Llama3 | Self::Smaug | Self::Qwen2 => {
                let pattern = match self {
                    Self::Qwen2 => QWEN2_PATTERN,
                    _ => LLAMA3_PATTERN,
                };
                let split = Split::new(
                    SplitPattern::Regex(pattern.into()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| e.to_string())?;
                PreTokenizerWrapper::Sequence(Sequence::new(vec![
                    split.into(),
                    ByteLevel::new(false, true, false).into(),
                ]))
            }
            Self::SmolLm => PreTokenizerWrapper::Sequence(Sequence::new(vec![
                Digits::new(true).into(),
                ByteLevel::new(false, true, true).into(),
            ])),
            Self::Gpt2 => ByteLevel::new(false, true, true).into(),
        })
    }

    /// Recognize the pre-tokenizer of an HF tokenizer.json by its structure.
    fn from_hf_json(pre: &serde_json::Value) -> Option<Self> {
        let ty = pre.get("type")?.as_str()?;
        match ty {
            "ByteLevel" if pre.get("use_regex")?.as_bool()? => Some(Self::Gpt2),
            "Sequence" => {
                let items = pre.get("pretokenizers")?.as_array()?;
                let types: Vec<&str> = items
                    .iter()
                    .filter_map(|p| p.get("type")?.as_str())
                    .collect();
                match types.as_slice() {
                    ["Split", "ByteLevel"] => {
                        match items[0].get("pattern")?.get("Regex")?.as_str()? {
                            LLAMA3_PATTERN => Some(Self::Llama3),
                            QWEN2_PATTERN => Some(Self::Qwen2),
                            _ => None,
                        }
                    }
                    ["Digits", "ByteLevel"] => {
                        let individual = items[0].get("individual_digits")?.as_bool()?;
                        let regex = items[1].get("use_regex")?.as_bool()?;
                        (individual && regex).then_some(Self::SmolLm)
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// Load an HF `tokenizer.json`.
pub fn from_tokenizer_json(path: impl AsRef<Path>) -> Result<Tokenizer, TokenizerError> {
    let path = path.as_ref();
    Tokenizer::from_file(path).map_err(|e| invalid(path, e.to_string()))
}

/// The two tokenizer families of Llama-architecture GGUF files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabKind {
    /// `tokenizer.ggml.model = "gpt2"`: byte-level BPE with merges and a pre-tokenizer
    /// (Llama-3, SmolLM2).
    BytePairs,
    /// `tokenizer.ggml.model = "llama"`: SentencePiece with scores, spaces as `▁`, bytes as
    /// `<0xXX>` tokens (Llama-2, Mistral, TinyLlama).
    SentencePiece,
}

/// SentencePiece's space symbol.
const SPM_SPACE: char = '\u{2581}';

/// The tokenizer fields of a GGUF file, as read from its metadata.
#[derive(Debug, Clone)]
pub struct GgufVocab {
    pub kind: VocabKind,
    /// Unused for SentencePiece (which splits nothing before merging).
    pub pre: PreTokenizer,
    /// SentencePiece: the score of each token (higher merges first).
    pub scores: Vec<f32>,
    /// SentencePiece: a space is put before the text and after each special token.
    pub add_space_prefix: bool,
    pub tokens: Vec<String>,
    pub token_types: Vec<i32>,
    pub merges: Vec<String>,
    pub special: SpecialTokens,
}

impl GgufVocab {
    pub fn from_gguf(file: &GgufFile) -> Result<Self, TokenizerError> {
        Self::from_metadata(file.metadata(), file.path())
    }

    pub fn from_metadata(md: &Metadata, path: &Path) -> Result<Self, TokenizerError> {
        let string = |k: &str| md.get(k).and_then(MetadataValue::as_str);
        let kind = match string(keys::MODEL) {
            Some("gpt2") => VocabKind::BytePairs,
            Some("llama") => VocabKind::SentencePiece,
            Some(other) => {
                return Err(invalid(
                    path,
                    format!(
                        "{} is {other:?}; supported: \"gpt2\" (byte-level BPE), \"llama\" (SentencePiece)",
                        keys::MODEL
                    ),
                ))
            }
            None => return Err(invalid(path, format!("missing {}", keys::MODEL))),
        };
        let spm = kind == VocabKind::SentencePiece;
        // SentencePiece vocabularies have no pre-tokenizer; llama.cpp ignores the key there.
        let pre_name = if spm {
            "default"
        } else {
            string(keys::PRE).unwrap_or("default")
        };
        let pre = PreTokenizer::from_gguf_name(pre_name).ok_or_else(|| {
            invalid(
                path,
                format!(
                    "{} {pre_name:?} is not supported (supported: {})",
                    keys::PRE,
                    PreTokenizer::GGUF_NAMES.join(", ")
                ),
            )
        })?;
        let strings = |k: &str| -> Result<Vec<String>, TokenizerError> {
            md.get(k)
                .and_then(MetadataValue::as_array)
                .and_then(ArrayValue::as_strings)
                .map(<[String]>::to_vec)
                .ok_or_else(|| invalid(path, format!("missing or non-string array {k}")))
        };
        let tokens = strings(keys::TOKENS)?;
        let merges = if spm {
            Vec::new()
        } else {
            strings(keys::MERGES)?
        };
        let scores: Vec<f32> = if spm {
            let s = md
                .get(keys::SCORES)
                .and_then(MetadataValue::as_array)
                .and_then(ArrayValue::to_f64_vec)
                .ok_or_else(|| {
                    invalid(
                        path,
                        format!("missing or non-numeric array {}", keys::SCORES),
                    )
                })?;
            if s.len() != tokens.len() {
                return Err(invalid(
                    path,
                    format!("{} tokens but {} scores", tokens.len(), s.len()),
                ));
            }
            s.into_iter().map(|x| x as f32).collect()
        } else {
            Vec::new()
        };
        let token_types: Vec<i32> = match md.get(keys::TOKEN_TYPE).and_then(MetadataValue::as_array)
        {
            Some(a) => a
                .to_i64_vec()
                .ok_or_else(|| {
                    invalid(
                        path,
                        format!("{} is not an integer array", keys::TOKEN_TYPE),
                    )
                })?
                .into_iter()
                .map(|t| t as i32)
                .collect(),
            None => vec![token_type::NORMAL; tokens.len()],
        };
        if token_types.len() != tokens.len() {
            return Err(invalid(
                path,
                format!(
                    "{} tokens but {} token types",
                    tokens.len(),
                    token_types.len()
                ),
            ));
        }
        let id = |k: &str| -> Result<Option<u32>, TokenizerError> {
            match md.get(k) {
                None => Ok(None),
                Some(v) => match v.as_u64().and_then(|x| u32::try_from(x).ok()) {
                    Some(i) if (i as usize) < tokens.len() => Ok(Some(i)),
                    _ => Err(invalid(path, format!("{k} = {v:?} is not a token id"))),
                },
            }
        };
        let find = |text: &str| tokens.iter().position(|t| t == text).map(|i| i as u32);
        let eot = match id(keys::EOT_ID)? {
            Some(i) => Some(i),
            // llama.cpp falls back to well-known end-of-turn texts when the key is absent.
            None => ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>"]
                .into_iter()
                .find_map(find),
        };
        // llama.cpp's defaults for SentencePiece vocabularies: <unk> 0, <s> 1, </s> 2.
        let default_id = |i: u32| (spm && (i as usize) < tokens.len()).then_some(i);
        let bos = id(keys::BOS_ID)?.or(default_id(1));
        let special = SpecialTokens {
            bos,
            eos: id(keys::EOS_ID)?.or(default_id(2)),
            eot,
            eom: id(keys::EOM_ID)?.or_else(|| find("<|eom_id|>")),
            pad: id(keys::PAD_ID)?,
            // llama.cpp adds BOS by default for its LLAMA3 pre-tokenizer names (where there is
            // a BOS id to add).
            add_bos: md
                .get(keys::ADD_BOS)
                .and_then(MetadataValue::as_bool)
                .unwrap_or((spm || pre == PreTokenizer::Llama3) && bos.is_some()),
        };
        Ok(Self {
            kind,
            scores,
            add_space_prefix: md
                .get(keys::ADD_SPACE_PREFIX)
                .and_then(MetadataValue::as_bool)
                .unwrap_or(spm),
            pre,
            tokens,
            token_types,
            merges,
            special,
        })
    }

    /// Token text -> id, as `tokenizers`' BPE takes the vocabulary.
    fn bpe_vocab(&self) -> tokenizers::models::bpe::Vocab {
        self.tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect()
    }

    /// Build the `tokenizers` tokenizer: BPE over the vocabulary and merges, the pre-tokenizer
    /// for `pre`, byte-level decoding, CONTROL tokens (and, for Llama-3, every id >= 128000) as
    /// special added tokens, USER_DEFINED ones as plain added tokens, and BOS prepended when
    /// `add_bos` is set.
    pub fn build(&self, path: &Path) -> Result<Tokenizer, TokenizerError> {
        if self.kind == VocabKind::SentencePiece {
            return self.build_sentencepiece(path);
        }
        let vocab = self.bpe_vocab();
        let merges = self
            .merges
            .iter()
            .enumerate()
            .map(|(i, m)| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| invalid(path, format!("merge {i} {m:?} has no space")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(self.pre == PreTokenizer::Llama3)
            .build()
            .map_err(|e| invalid(path, format!("building BPE: {e}")))?;
        let mut tok = Tokenizer::new(bpe);
        tok.with_pre_tokenizer(Some(self.pre.build().map_err(|e| invalid(path, e))?));
        tok.with_decoder(Some(ByteLevelDecoder::default()));

        let mut special = Vec::new();
        let mut user = Vec::new();
        for (i, (t, &ty)) in self.tokens.iter().zip(&self.token_types).enumerate() {
            let is_llama3_reserved = self.pre.llama3_split() && i as u32 >= LLAMA3_FIRST_SPECIAL;
            if ty == token_type::CONTROL || is_llama3_reserved {
                special.push(AddedToken::from(t.clone(), true).normalized(false));
            } else if ty == token_type::USER_DEFINED {
                user.push(AddedToken::from(t.clone(), false).normalized(false));
            }
        }
        tok.add_special_tokens(special)
            .map_err(|e| invalid(path, e.to_string()))?;
        tok.add_tokens(user)
            .map_err(|e| invalid(path, e.to_string()))?;

        if self.special.add_bos {
            let bos = self.special.bos.ok_or_else(|| {
                invalid(path, "add_bos_token is set but there is no bos_token_id")
            })?;
            let text = self.tokens[bos as usize].clone();
            let post = TemplateProcessing::builder()
                .try_single(format!("{text} $A"))
                .and_then(|b| b.try_pair(format!("{text} $A {text} $B")))
                .map_err(|e| invalid(path, e))?
                .special_tokens(vec![(text, bos)])
                .build()
                .map_err(|e| invalid(path, e.to_string()))?;
            tok.with_post_processor(Some(post));
        }
        Ok(tok)
    }

    /// SentencePiece as llama.cpp runs it (`llm_tokenizer_spm`), in `tokenizers` terms as
    /// HF's Llama converter builds it: spaces become `▁` (and one is put before each run of
    /// text, at the start and after special tokens, where `add_space_prefix`); adjacent pieces
    /// merge while their concatenation is a token, highest score first, which is BPE with one
    /// merge per split of each token ranked by that token's score; characters no token covers
    /// fall back to their UTF-8 bytes as `<0xXX>` tokens.
    fn build_sentencepiece(&self, path: &Path) -> Result<Tokenizer, TokenizerError> {
        use std::collections::HashMap;
        use tokenizers::decoders::{byte_fallback::ByteFallback, fuse::Fuse, strip::Strip};
        use tokenizers::normalizers::{Prepend, Replace};
        use tokenizers::{DecoderWrapper, NormalizerWrapper};

        let err = |e: tokenizers::Error| invalid(path, e.to_string());
        let ids: HashMap<&str, u32> = self
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i as u32))
            .collect();
        let mut ranked: Vec<(f32, u32, usize)> = Vec::new();
        for (i, (t, &ty)) in self.tokens.iter().zip(&self.token_types).enumerate() {
            if ty != token_type::NORMAL && ty != token_type::USER_DEFINED {
                continue;
            }
            for (at, _) in t.char_indices().skip(1) {
                if ids.contains_key(&t[..at]) && ids.contains_key(&t[at..]) {
                    ranked.push((self.scores[i], i as u32, at));
                }
            }
        }
        // Highest score first; ties by id, then by split, so the order is deterministic.
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let merges: Vec<(String, String)> = ranked
            .iter()
            .map(|&(_, i, at)| {
                let t = &self.tokens[i as usize];
                (t[..at].to_string(), t[at..].to_string())
            })
            .collect();
        let vocab = self.bpe_vocab();
        let unk = self
            .token_types
            .iter()
            .position(|&t| t == token_type::UNKNOWN)
            .map(|i| self.tokens[i].clone());
        let mut bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .byte_fallback(true)
            .fuse_unk(true);
        if let Some(unk) = unk {
            bpe = bpe.unk_token(unk);
        }
        let bpe = bpe
            .build()
            .map_err(|e| invalid(path, format!("building the SentencePiece merges: {e}")))?;
        let mut tok = Tokenizer::new(bpe);
        let space = SPM_SPACE.to_string();
        let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
        if self.add_space_prefix {
            normalizers.push(Prepend::new(space.clone()).into());
        }
        normalizers.push(Replace::new(" ", space.as_str()).map_err(err)?.into());
        tok.with_normalizer(Some(tokenizers::normalizers::Sequence::new(normalizers)))
            .map_err(err)?;
        let mut decoders: Vec<DecoderWrapper> = vec![
            Replace::new(space.as_str(), " ").map_err(err)?.into(),
            ByteFallback::new().into(),
            Fuse::new().into(),
        ];
        if self.add_space_prefix {
            decoders.push(Strip::new(' ', 1, 0).into());
        }
        tok.with_decoder(Some(tokenizers::decoders::sequence::Sequence::new(
            decoders,
        )));
        let mut special = Vec::new();
        let mut user = Vec::new();
        for (t, &ty) in self.tokens.iter().zip(&self.token_types) {
            if ty == token_type::CONTROL || ty == token_type::UNKNOWN {
                special.push(AddedToken::from(t.clone(), true).normalized(false));
            } else if ty == token_type::USER_DEFINED {
                user.push(AddedToken::from(t.clone(), false).normalized(false));
            }
        }
        tok.add_special_tokens(special).map_err(err)?;
        tok.add_tokens(user).map_err(err)?;
        Ok(tok)
    }

    /// The bytes token `id` stands for in generated text, as llama.cpp's `token_to_piece`
    /// without special tokens: nothing for control, unknown and unused tokens, the text of
    /// user-defined ones; byte-level BPE text decoded to bytes; SentencePiece `▁` as a space
    /// and `<0xXX>` as that byte.
    pub fn token_bytes(
        &self,
        id: u32,
        byte_decoder: &std::collections::HashMap<char, u8>,
    ) -> Vec<u8> {
        let (Some(t), Some(&ty)) = (
            self.tokens.get(id as usize),
            self.token_types.get(id as usize),
        ) else {
            return Vec::new();
        };
        match (self.kind, ty) {
            (_, token_type::CONTROL | token_type::UNUSED) => Vec::new(),
            (VocabKind::SentencePiece, token_type::UNKNOWN) => Vec::new(),
            (_, token_type::USER_DEFINED) => t.as_bytes().to_vec(),
            (VocabKind::SentencePiece, token_type::BYTE) => t
                .strip_prefix("<0x")
                .and_then(|h| h.strip_suffix('>'))
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .map_or_else(Vec::new, |b| vec![b]),
            (VocabKind::SentencePiece, _) => t.replace(SPM_SPACE, " ").into_bytes(),
            (VocabKind::BytePairs, _) => byte_level_bytes(t, byte_decoder),
        }
    }
}

/// Tokenizer and special ids of a GGUF file.
pub fn from_gguf(file: &GgufFile) -> Result<(Tokenizer, SpecialTokens), TokenizerError> {
    let vocab = GgufVocab::from_gguf(file)?;
    let tok = vocab.build(file.path())?;
    Ok((tok, vocab.special))
}

/// Convert an HF `tokenizer.json` (byte-level BPE) into the `tokenizer.ggml.*` metadata that
/// llama.cpp's converter writes: model, pre, tokens (padded to `vocab_size` with `[PAD{id}]`),
/// token types (added special -> CONTROL, other added -> USER_DEFINED) and merges.
/// BOS/EOS ids and the chat template come from `tokenizer_config.json`, handled by the caller.
pub fn hf_to_gguf_metadata(
    path: impl AsRef<Path>,
    vocab_size: Option<usize>,
) -> Result<Metadata, TokenizerError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| invalid(path, e.to_string()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| invalid(path, format!("not JSON: {e}")))?;
    let model = &json["model"];
    if model["type"].as_str() != Some("BPE") {
        return Err(invalid(path, "only BPE tokenizers are supported"));
    }
    let pre = PreTokenizer::from_hf_json(&json["pre_tokenizer"]).ok_or_else(|| {
        invalid(
            path,
            "unrecognized pre_tokenizer (supported: Llama-3, SmolLM, GPT-2 byte-level)",
        )
    })?;
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| invalid(path, "model.vocab is not an object"))?;
    let mut by_id: Vec<Option<(String, i32)>> = Vec::new();
    let mut put = |id: u64, tok: &str, ty: i32| -> Result<(), TokenizerError> {
        let id = usize::try_from(id)
            .ok()
            .filter(|&i| i < 10_000_000)
            .ok_or_else(|| invalid(path, format!("token id {id} is out of range")))?;
        if by_id.len() <= id {
            by_id.resize(id + 1, None);
        }
        by_id[id] = Some((tok.to_string(), ty));
        Ok(())
    };
    for (tok, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| invalid(path, format!("vocab id of {tok:?}")))?;
        put(id, tok, token_type::NORMAL)?;
    }
    for added in json["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(content)) = (added["id"].as_u64(), added["content"].as_str()) else {
            return Err(invalid(path, "added_tokens entry without id/content"));
        };
        let ty = if added["special"].as_bool().unwrap_or(false) {
            token_type::CONTROL
        } else {
            token_type::USER_DEFINED
        };
        put(id, content, ty)?;
    }
    let n = vocab_size.unwrap_or(by_id.len()).max(by_id.len());
    let mut tokens = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    for i in 0..n {
        match by_id.get(i).cloned().flatten() {
            Some((t, ty)) => {
                tokens.push(t);
                types.push(ty);
            }
            None => {
                tokens.push(format!("[PAD{i}]"));
                types.push(token_type::UNUSED);
            }
        }
    }
    let merges = model["merges"]
        .as_array()
        .ok_or_else(|| invalid(path, "model.merges is missing"))?
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => Some(s.clone()),
            // Newer tokenizer.json files store merges as pairs.
            serde_json::Value::Array(p) => match p.as_slice() {
                [a, b] => Some(format!("{} {}", a.as_str()?, b.as_str()?)),
                _ => None,
            },
            _ => None,
        })
        .collect::<Option<Vec<String>>>()
        .ok_or_else(|| invalid(path, "a merge is neither \"a b\" nor [a, b]"))?;

    let mut md = Metadata::new();
    md.set(keys::MODEL, MetadataValue::String("gpt2".into()));
    md.set(keys::PRE, MetadataValue::String(pre.gguf_name().into()));
    md.set(keys::TOKENS, MetadataValue::string_array(tokens));
    md.set(
        keys::TOKEN_TYPE,
        MetadataValue::Array(ArrayValue::I32(types)),
    );
    md.set(keys::MERGES, MetadataValue::string_array(merges));
    Ok(md)
}

/// GPT-2's byte <-> printable-character map of byte-level BPE, inverted: char -> byte.
pub fn byte_decoder() -> std::collections::HashMap<char, u8> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.iter()
        .zip(&cs)
        .filter_map(|(&b, &c)| Some((char::from_u32(c)?, b as u8)))
        .collect()
}

/// The bytes a byte-level BPE token string stands for (characters outside the byte alphabet
/// are kept as their UTF-8).
pub fn byte_level_bytes(token: &str, dec: &std::collections::HashMap<char, u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(token.len());
    for c in token.chars() {
        match dec.get(&c) {
            Some(&b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    out
}
