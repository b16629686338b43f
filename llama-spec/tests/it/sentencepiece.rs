//! SentencePiece vocabularies (`tokenizer.ggml.model = "llama"`: Llama-2, Mistral, TinyLlama)
//! tokenize as llama.cpp does: a project-made vocabulary (tests/fixtures/make_spm_fixture.py)
//! against `llama-tokenize`'s ids for llama.cpp's own SentencePiece test strings and ours
//! (Chinese, emoji and byte fallback, special tokens, runs of spaces, code).

use std::path::PathBuf;

use llama_spec::gguf::GgufFile;
use llama_spec::tokenizer::{self, GgufVocab, VocabKind};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/tokenizer")
        .join(name)
}

#[test]
fn sentencepiece_ids_equal_llama_cpp() {
    let file = GgufFile::open(fixture("spm-vocab.gguf")).expect("open the vocabulary");
    let vocab = GgufVocab::from_gguf(&file).expect("vocabulary");
    assert_eq!(vocab.kind, VocabKind::SentencePiece);
    assert!(vocab.special.add_bos && vocab.add_space_prefix);
    assert_eq!((vocab.special.bos, vocab.special.eos), (Some(1), Some(2)));
    let (tok, _) = tokenizer::from_gguf(&file).expect("tokenizer");
    let text = std::fs::read_to_string(fixture("spm-vocab.json")).expect("fixture");
    let fx: serde_json::Value = serde_json::from_str(&text).expect("json");
    let cases = fx["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 53);
    let dec = tokenizer::byte_decoder();
    let mut byte_fallbacks = 0;
    for c in cases {
        let text = c["text"].as_str().expect("text");
        let want: Vec<u32> = c["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|v| v.as_u64().expect("id") as u32)
            .collect();
        let got = tok.encode(text, false).expect("encode").get_ids().to_vec();
        assert_eq!(got, want, "{text:?}");
        byte_fallbacks += got.iter().filter(|&&i| (3..259).contains(&i)).count();
        // The pieces' bytes give the text back, after the space put in front of it.
        if !text.is_empty() && !text.contains("<s>") {
            let bytes: Vec<u8> = got
                .iter()
                .flat_map(|&i| vocab.token_bytes(i, &dec))
                .collect();
            assert_eq!(
                String::from_utf8_lossy(&bytes),
                format!(" {text}"),
                "{text:?}"
            );
        }
    }
    // The cases exercise byte fallback (characters the small vocabulary lacks).
    assert!(byte_fallbacks > 50, "{byte_fallbacks} byte tokens");
}
