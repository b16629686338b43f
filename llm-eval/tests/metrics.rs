//! Our metrics against the reference implementations' numbers
//! (`tests/fixtures/make_eval_fixtures.py`: sacrebleu, rouge-chinese + jieba as OpenCompass
//! calls them, the official CMRC 2018 script with NLTK, TriviaQA's normalizer).

use llm_eval::metrics::{self, cmrc, rouge, text, BleuTokenizer};
use serde_json::Value;

fn fixture() -> Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/eval/metrics.json"
    );
    let s = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p}: {e}"));
    serde_json::from_str(&s).expect("metrics.json")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect()
}

#[test]
fn bleu_equals_sacrebleu() {
    let f = fixture();
    let cases = f["bleu"].as_array().expect("bleu");
    assert!(cases.len() >= 12);
    for (i, c) in cases.iter().enumerate() {
        let tok = match c["tokenize"].as_str() {
            Some("zh") => BleuTokenizer::Zh,
            _ => BleuTokenizer::Mteval13a,
        };
        let hyps = strings(&c["hyps"]);
        for (h, want) in hyps.iter().zip(strings(&c["tokenized"])) {
            assert_eq!(tok.tokenize(h.trim_end()), want, "case {i} tokenize {h:?}");
        }
        let refs: Vec<Vec<String>> = c["refs"]
            .as_array()
            .expect("refs")
            .iter()
            .map(strings)
            .collect();
        let b = metrics::corpus_bleu(&hyps, &refs, tok);
        let want = c["score"].as_f64().expect("score");
        assert!(
            (b.score - want).abs() < 1e-9,
            "case {i}: {} vs sacrebleu {want}",
            b.score
        );
        assert_eq!(
            b.sys_len as u64,
            c["sys_len"].as_u64().expect("sys_len"),
            "case {i}"
        );
        assert_eq!(
            b.ref_len as u64,
            c["ref_len"].as_u64().expect("ref_len"),
            "case {i}"
        );
        let counts: Vec<u64> = b.correct.iter().map(|&x| x as u64).collect();
        let want_counts: Vec<u64> = c["counts"]
            .as_array()
            .expect("counts")
            .iter()
            .map(|x| x.as_u64().expect("n"))
            .collect();
        assert_eq!(counts, want_counts, "case {i}");
    }
}

#[test]
fn rouge_l_equals_rouge_chinese_as_opencompass_calls_it() {
    let f = fixture();
    for (i, c) in f["rouge"].as_array().expect("rouge").iter().enumerate() {
        let (p, r) = (strings(&c["preds"]), strings(&c["refs"]));
        let j = rouge::rouge_l_jieba(&p, &r);
        let ch = rouge::rouge_l_char(&p, &r);
        let (wj, wc) = (
            c["rougeL_jieba"].as_f64().expect("j"),
            c["rougeL_char"].as_f64().expect("c"),
        );
        assert!((j - wj).abs() < 1e-9, "case {i}: jieba {j} vs {wj}");
        assert!((ch - wc).abs() < 1e-9, "case {i}: char {ch} vs {wc}");
    }
}

#[test]
fn jieba_segmentation_equals_python_jieba() {
    let f = fixture();
    for c in f["jieba"].as_array().expect("jieba") {
        let t = c["text"].as_str().expect("text");
        assert_eq!(rouge::jieba_join(t), strings(&c["cut"]).join(" "), "{t}");
    }
}

#[test]
fn cmrc_f1_em_equal_the_official_script() {
    let f = fixture();
    for c in f["nltk"].as_array().expect("nltk") {
        let t = c["text"].as_str().expect("text");
        assert_eq!(cmrc::word_tokenize(t), strings(&c["tokens"]), "{t:?}");
    }
    for c in f["cmrc"].as_array().expect("cmrc") {
        let answers = strings(&c["answers"]);
        let p = c["prediction"].as_str().expect("prediction");
        let f1 = metrics::cmrc_f1(&answers, p);
        assert!(
            (f1 - c["f1"].as_f64().expect("f1")).abs() < 1e-12,
            "{answers:?} {p:?}: {f1}"
        );
        assert_eq!(
            metrics::cmrc_em(&answers, p),
            c["em"].as_f64().expect("em"),
            "{answers:?} {p:?}"
        );
    }
}

#[test]
fn triviaqa_normalizer_equals_the_official_one() {
    let f = fixture();
    for c in f["triviaqa"].as_array().expect("triviaqa") {
        for (k, nk) in [("alias", "norm_alias"), ("prediction", "norm_prediction")] {
            let s = c[k].as_str().expect("s");
            assert_eq!(
                text::triviaqa_normalize(s),
                c[nk].as_str().expect("n"),
                "{s:?}"
            );
        }
    }
}
