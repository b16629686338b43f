//! Scoring functions, each written to give the same number as the reference implementation
//! named in its module (checked against fixtures made by `tests/fixtures/make_eval_fixtures.py`).

pub mod bleu;
pub mod cmrc;
pub mod rouge;
pub mod text;

pub use bleu::{corpus_bleu, BleuTokenizer};
pub use cmrc::{cmrc_em, cmrc_f1};
pub use rouge::{rouge_l_char, rouge_l_jieba};

/// Python's `str.isspace()`: Unicode White_Space plus the ASCII file/group/record/unit
/// separators (U+001C..U+001F), which Python counts as whitespace and Rust does not.
pub fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.split()` with no argument.
pub fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(py_isspace).filter(|w| !w.is_empty())
}

/// Python's `str.strip()` with no argument.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(py_isspace)
}
