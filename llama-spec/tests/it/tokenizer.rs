//! Token ids equal the references on a 300+ string corpus (tests/fixtures/tokenizer/corpus.json):
//! HF `tokenizers` for llama3-tokenizer.json, llama.cpp for SmolLM2's GGUF-embedded tokenizer.

use crate::common;

use llama_spec::gguf::{GgufFile, MetadataValue};
use llama_spec::tokenizer::{self, keys, GgufVocab, PreTokenizer};
use tokenizers::Tokenizer;

struct Case {
    text: String,
    llama3: Vec<u32>,
    smollm2: Vec<u32>,
}

fn corpus() -> Vec<Case> {
    let text = std::fs::read_to_string(common::fixture("tokenizer/corpus.json")).expect("corpus");
    let rows: Vec<serde_json::Value> = serde_json::from_str(&text).expect("json");
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .expect("ids")
            .iter()
            .map(|x| x.as_u64().expect("id") as u32)
            .collect()
    };
    rows.iter()
        .map(|r| Case {
            text: r["text"].as_str().expect("text").to_string(),
            llama3: ids(&r["llama3"]),
            smollm2: ids(&r["smollm2"]),
        })
        .collect()
}

fn check(tok: &Tokenizer, which: &str, expected: impl Fn(&Case) -> &[u32]) {
    let cases = corpus();
    assert!(cases.len() >= 300, "corpus has {} strings", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let got = tok.encode(c.text.as_str(), false).expect("encode");
        if got.get_ids() != expected(c) {
            failures.push(format!(
                "{:?}: got {:?} want {:?}",
                c.text,
                got.get_ids(),
                expected(c)
            ));
            continue;
        }
        let back = tok.decode(got.get_ids(), false).expect("decode");
        if back != c.text {
            failures.push(format!("{:?}: decodes to {back:?}", c.text));
        }
    }
    assert!(
        failures.is_empty(),
        "{which}: {} of {} strings differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn llama3_tokenizer_json_matches_hf() {
    let tok = tokenizer::from_tokenizer_json(common::llama3_tokenizer()).expect("load");
    check(&tok, "llama3 tokenizer.json", |c| &c.llama3);
}

/// tokenizer.json -> GGUF metadata -> tokenizer rebuilt from metadata alone: the path a
/// Llama-3 GGUF takes through the runtime.
#[test]
fn llama3_rebuilt_from_gguf_metadata_matches_hf() {
    let path = common::llama3_tokenizer();
    let md = tokenizer::hf_to_gguf_metadata(&path, Some(128_256)).expect("convert");
    assert_eq!(
        md.get(keys::PRE).and_then(MetadataValue::as_str),
        Some("llama-bpe")
    );
    let vocab = GgufVocab::from_metadata(&md, &path).expect("vocab");
    assert_eq!(vocab.tokens.len(), 128_256);
    assert_eq!(vocab.pre, PreTokenizer::Llama3);
    assert_eq!(vocab.special.eot, Some(128_009), "<|eot_id|> found by text");
    let tok = vocab.build(&path).expect("build");
    check(&tok, "llama3 from GGUF metadata", |c| &c.llama3);
    // Reserved ids >= 128000 are special: they never come out of plain text pieces.
    let ids = tok
        .encode("<|reserved_special_token_5|>", false)
        .expect("encode");
    assert_eq!(ids.get_ids(), &[128_010]);
}

#[test]
fn smollm2_gguf_tokenizer_matches_llama_cpp() {
    let file = GgufFile::open(common::smollm2()).expect("open");
    let (tok, special) = tokenizer::from_gguf(&file).expect("tokenizer");
    assert_eq!(special.bos, Some(1));
    assert_eq!(special.eos, Some(2));
    assert_eq!(special.eot, Some(2), "<|im_end|> is id 2");
    assert!(!special.add_bos);
    check(&tok, "SmolLM2 GGUF", |c| &c.smollm2);
}

#[test]
fn add_bos_prepends_bos() {
    let path = common::llama3_tokenizer();
    let md = tokenizer::hf_to_gguf_metadata(&path, None).expect("convert");
    let mut vocab = GgufVocab::from_metadata(&md, &path).expect("vocab");
    vocab.special.bos = Some(128_000);
    vocab.special.add_bos = true;
    let tok = vocab.build(&path).expect("build");
    let enc = tok.encode("Hello world", true).expect("encode");
    assert_eq!(enc.get_ids(), &[128_000, 9906, 1917]);
}

#[test]
fn bad_metadata_is_a_clear_error() {
    let path = common::llama3_tokenizer();
    let mut md = tokenizer::hf_to_gguf_metadata(&path, None).expect("convert");
    md.set(keys::PRE, MetadataValue::String("deepseek-llm".into()));
    let err = GgufVocab::from_metadata(&md, &path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("llama3-tokenizer.json") && err.contains("deepseek-llm"),
        "{err}"
    );
    // A SentencePiece vocabulary needs its scores.
    md.set(keys::MODEL, MetadataValue::String("llama".into()));
    let err = GgufVocab::from_metadata(&md, &path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("tokenizer.ggml.scores"), "{err}");
    md.set(keys::MODEL, MetadataValue::String("bert".into()));
    let err = GgufVocab::from_metadata(&md, &path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bert") && err.contains("gpt2") && err.contains("llama"),
        "{err}"
    );
}

/// The names llama.cpp gives the Llama-3 split rule tokenize as llama.cpp does on the same
/// vocabulary (tests/fixtures/make_pretokenizer_fixtures.py): `llama-bpe` keeps vocabulary words
/// whole, `smaug-bpe` (what llama.cpp's converter writes for a Llama-3 tokenizer.json without a
/// BOS post-processor) applies the merges; the fixture holds 60+ strings where they differ.
#[test]
fn llama3_pre_tokenizer_names_match_llama_cpp() {
    let text = std::fs::read_to_string(common::fixture("tokenizer/llama_cpp_pre_names.json"))
        .expect("fixture");
    let fx: serde_json::Value = serde_json::from_str(&text).expect("json");
    let texts: Vec<&str> = fx["texts"]
        .as_array()
        .expect("texts")
        .iter()
        .map(|t| t.as_str().expect("text"))
        .collect();
    assert!(texts.len() >= 400, "{} strings", texts.len());
    let path = common::llama3_tokenizer();
    let mut differ = 0;
    for (name, pre) in [
        ("llama-bpe", PreTokenizer::Llama3),
        ("smaug-bpe", PreTokenizer::Smaug),
    ] {
        let want = &fx["names"][name];
        let mut md = tokenizer::hf_to_gguf_metadata(&path, Some(128_256)).expect("convert");
        md.set(keys::PRE, MetadataValue::String(name.into()));
        // As llama.cpp's converter writes it.
        md.set(keys::ADD_BOS, MetadataValue::Bool(false));
        let vocab = GgufVocab::from_metadata(&md, &path).expect("vocab");
        assert_eq!(vocab.pre, pre, "{name}");
        assert_eq!(
            vocab.special.add_bos,
            want["adds_bos"].as_bool().expect("adds_bos"),
            "{name}"
        );
        let tok = vocab.build(&path).expect("build");
        let mut failures = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            let ids: Vec<u32> = want["ids"][i]
                .as_array()
                .expect("ids")
                .iter()
                .map(|x| x.as_u64().expect("id") as u32)
                .collect();
            let got = tok.encode(*t, false).expect("encode");
            if got.get_ids() != ids {
                failures.push(format!("{t:?}: got {:?} want {ids:?}", got.get_ids()));
            }
            if name == "smaug-bpe" && want["ids"][i] != fx["names"]["llama-bpe"]["ids"][i] {
                differ += 1;
            }
        }
        assert!(
            failures.is_empty(),
            "{name}: {} of {} strings differ from llama.cpp:\n{}",
            failures.len(),
            texts.len(),
            failures.join("\n")
        );
    }
    assert!(
        differ >= 50,
        "only {differ} strings tell the two rules apart"
    );
}

/// Without an add_bos key, BOS is added for llama.cpp's LLAMA3 names only (llama-vocab.cpp
/// sets `add_bos = true` with that pre-tokenizer type).
#[test]
fn add_bos_defaults_follow_llama_cpp() {
    let path = common::llama3_tokenizer();
    for (name, add_bos) in [("llama-bpe", true), ("llama3", true), ("smaug-bpe", false)] {
        let mut md = tokenizer::hf_to_gguf_metadata(&path, None).expect("convert");
        md.set(keys::PRE, MetadataValue::String(name.into()));
        md.remove(keys::ADD_BOS);
        md.set(keys::BOS_ID, MetadataValue::U32(128_000));
        let vocab = GgufVocab::from_metadata(&md, &path).expect("vocab");
        assert_eq!(vocab.special.add_bos, add_bos, "{name}");
    }
}
