//! llama.cpp's own tokenizer test vectors pass for every vocabulary we read: its
//! `models/ggml-vocab-NAME.gguf` files (vocabulary-only GGUFs of the real models' tokenizers)
//! with the strings in `.gguf.inp` and llama.cpp's ids for them in `.gguf.out`, as its
//! `test-tokenizer-0` checks them (no BOS, special-token texts not parsed). The files come from
//! the pinned llama-cpp-python sdist; `scripts/fetch-assets.sh` extracts them into
//! `assets/llama-cpp-vocab/`.

use std::path::PathBuf;

use llama_spec::gguf::GgufFile;
use llama_spec::tokenizer::{self, GgufVocab, PreTokenizer, VocabKind};

/// The vocabularies with test vectors whose rules we implement, and what they must read as.
const SUPPORTED: [(&str, VocabKind, Option<PreTokenizer>); 5] = [
    ("gpt-2", VocabKind::BytePairs, Some(PreTokenizer::Gpt2)),
    (
        "llama-bpe",
        VocabKind::BytePairs,
        Some(PreTokenizer::Llama3),
    ),
    ("qwen2", VocabKind::BytePairs, Some(PreTokenizer::Qwen2)),
    ("llama-spm", VocabKind::SentencePiece, None),
    ("phi-3", VocabKind::SentencePiece, None),
];

/// Vocabularies in the same folder whose rules we do not implement: loading one must fail
/// with an error that names the file and the supported names.
const UNSUPPORTED: [&str; 3] = ["deepseek-llm", "falcon", "starcoder"];

fn vocab_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../assets/llama-cpp-vocab")
}

fn path(name: &str, ext: &str) -> PathBuf {
    let p = vocab_dir().join(format!("ggml-vocab-{name}.gguf{ext}"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-assets.sh",
        p.display()
    );
    p
}

/// `(text, ids)` pairs, split as `test-tokenizer-0.cpp` splits them.
fn cases(name: &str) -> Vec<(String, Vec<u32>)> {
    let inp = std::fs::read_to_string(path(name, ".inp")).expect("read .inp");
    let out = std::fs::read_to_string(path(name, ".out")).expect("read .out");
    let sep = "\n__ggml_vocab_test__\n";
    let mut texts = Vec::new();
    let mut rest = inp.as_str();
    while !rest.is_empty() {
        match rest.find(sep) {
            Some(i) => {
                texts.push(rest[..i].to_string());
                rest = &rest[i + sep.len()..];
            }
            None => {
                texts.push(rest.to_string());
                break;
            }
        }
    }
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|t| t.parse().expect("token id"))
                .collect()
        })
        .collect();
    assert_eq!(texts.len(), ids.len(), "{name}: .inp and .out disagree");
    texts.into_iter().zip(ids).collect()
}

#[test]
fn llama_cpp_vocab_test_vectors_pass_for_every_supported_vocabulary() {
    let mut total = 0;
    let mut failures = Vec::new();
    for (name, kind, pre) in SUPPORTED {
        let file = GgufFile::open(path(name, "")).expect("open the vocabulary");
        let vocab = GgufVocab::from_gguf(&file).expect("read the vocabulary");
        assert_eq!(vocab.kind, kind, "{name}");
        if let Some(pre) = pre {
            assert_eq!(vocab.pre, pre, "{name}");
        }
        let (tok, _) = tokenizer::from_gguf(&file).expect("build the tokenizer");
        let cases = cases(name);
        assert!(cases.len() >= 30, "{name}: {} cases", cases.len());
        for (text, want) in &cases {
            let got = tok.encode(text.as_str(), false).expect("encode");
            if got.get_ids() != want.as_slice() {
                failures.push(format!(
                    "{name}: {text:?}\n  llama.cpp {want:?}\n  ours      {:?}",
                    got.get_ids()
                ));
            }
        }
        total += cases.len();
    }
    assert!(
        failures.is_empty(),
        "{} of {total} cases differ from llama.cpp:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Five vocabularies, the same 46 strings for each.
    assert!(total >= 150, "{total} cases");
}

#[test]
fn vocabularies_we_do_not_implement_are_refused_by_name() {
    for name in UNSUPPORTED {
        let p = path(name, "");
        let file = GgufFile::open(&p).expect("open the vocabulary");
        let err = GgufVocab::from_gguf(&file)
            .expect_err("an unimplemented pre-tokenizer must be refused")
            .to_string();
        assert!(err.contains(&p.display().to_string()), "{err}");
        assert!(err.contains(name) && err.contains("llama-bpe, "), "{err}");
    }
}
