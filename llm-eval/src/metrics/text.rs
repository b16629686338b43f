//! Answer normalizations and extractions used by the generation tasks.

use std::sync::OnceLock;

use regex::Regex;

use super::py_split;

fn re(cell: &'static OnceLock<Regex>, pattern: &str) -> &'static Regex {
    cell.get_or_init(|| Regex::new(pattern).unwrap_or_else(|e| panic!("built-in regex: {e}")))
}

/// OpenCompass's `general_postprocess`: cut at the first newline, `.` or `,`; drop
/// punctuation (`[^\w\s]`); drop English articles; squeeze whitespace.
pub fn general_postprocess(text: &str) -> String {
    static PUNCT: OnceLock<Regex> = OnceLock::new();
    static ARTICLES: OnceLock<Regex> = OnceLock::new();
    static SPACES: OnceLock<Regex> = OnceLock::new();
    let cut = text.split(['\n', '.', ',']).next().unwrap_or("");
    let s = re(&PUNCT, r"[^\w\s]").replace_all(cut, "");
    let s = re(&ARTICLES, r"(?i)\b(a|an|the)\b").replace_all(&s, "");
    let s = re(&SPACES, r"\s+").replace_all(&s, " ");
    super::py_strip(&s).to_string()
}

/// TriviaQA's official `normalize_answer` (triviaqa_evaluation.py): underscores to spaces,
/// lower case, punctuation (ASCII and ‘’´`) to spaces, articles removed, whitespace squeezed.
pub fn triviaqa_normalize(s: &str) -> String {
    static ARTICLES: OnceLock<Regex> = OnceLock::new();
    let s = s.replace('_', " ").to_lowercase();
    let s: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_punctuation() || matches!(c, '‘' | '’' | '´' | '`') {
                ' '
            } else {
                c
            }
        })
        .collect();
    let s = re(&ARTICLES, r"\b(a|an|the)\b").replace_all(&s, " ");
    py_split(&s).collect::<Vec<_>>().join(" ")
}

/// 1.0 when the normalized prediction equals any normalized alias.
pub fn triviaqa_em(aliases: &[String], prediction: &str) -> f64 {
    let p = triviaqa_normalize(prediction);
    f64::from(u8::from(aliases.iter().any(|a| triviaqa_normalize(a) == p)))
}

/// The last number in `text` (commas as thousands separators removed, a trailing period
/// dropped), as GSM8K's "last number" extraction does; `None` when there is none.
pub fn last_number(text: &str) -> Option<String> {
    static NUM: OnceLock<Regex> = OnceLock::new();
    let m = re(&NUM, r"-?[0-9][0-9,]*(?:\.[0-9]+)?")
        .find_iter(text)
        .last()?;
    Some(m.as_str().replace(',', ""))
}

/// Numeric equality of two number strings ("18" == "18.0"); plain string equality otherwise.
pub fn same_number(a: &str, b: &str) -> bool {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => (x - y).abs() <= 1e-9 * x.abs().max(1.0),
        _ => a == b,
    }
}

/// GSM8K's gold answer: the text after the final `####`.
pub fn gsm8k_gold(answer: &str) -> Option<String> {
    let tail = answer.rsplit("####").next()?;
    last_number(tail)
}

/// A CJK ideograph (the URO, extensions A-F, compatibility ideographs) or CJK punctuation /
/// fullwidth form: what counts as "Chinese" in generated text.
/// Whether `s` has any CJK character (`is_cjk`): the tasks ask such a text in Chinese.
pub fn has_cjk(s: &str) -> bool {
    s.chars().any(is_cjk)
}

pub fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{4e00}'..='\u{9fff}'
        | '\u{3400}'..='\u{4dbf}'
        | '\u{20000}'..='\u{2ebef}'
        | '\u{f900}'..='\u{faff}'
        | '\u{3000}'..='\u{303f}'
        | '\u{ff00}'..='\u{ffef}')
}

/// For each token of a generated sequence (its bytes), whether it carries any part of a CJK
/// character. Tokens are byte pieces: a character split over two tokens counts for both.
pub fn cjk_tokens(pieces: &[&[u8]]) -> Vec<bool> {
    let bytes: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
    // Mark every byte that belongs to a CJK character of the (lossily) decoded stream.
    let mut is_cjk_byte = vec![false; bytes.len()];
    let mut i = 0;
    while i < bytes.len() {
        match std::str::from_utf8(&bytes[i..]) {
            Ok(s) => {
                mark(s, i, &mut is_cjk_byte);
                break;
            }
            Err(e) => {
                let good = e.valid_up_to();
                if let Ok(s) = std::str::from_utf8(&bytes[i..i + good]) {
                    mark(s, i, &mut is_cjk_byte);
                }
                i += good + e.error_len().unwrap_or(bytes.len() - i - good).max(1);
            }
        }
    }
    let mut out = Vec::with_capacity(pieces.len());
    let mut at = 0;
    for p in pieces {
        out.push(is_cjk_byte[at..at + p.len()].iter().any(|&b| b));
        at += p.len();
    }
    out
}

fn mark(s: &str, offset: usize, flags: &mut [bool]) {
    for (j, c) in s.char_indices() {
        if is_cjk(c) {
            for f in &mut flags[offset + j..offset + j + c.len_utf8()] {
                *f = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(last_number("so 1,234 apples and 5.5."), Some("5.5".into()));
        assert_eq!(gsm8k_gold("...\n#### 1,200"), Some("1200".into()));
        assert!(same_number("18", "18.0"));
        assert_eq!(last_number("none"), None);
    }

    #[test]
    fn split_character_counts_for_both_tokens() {
        let s = "你a".as_bytes();
        let pieces: Vec<&[u8]> = vec![&s[..1], &s[1..3], &s[3..]];
        assert_eq!(cjk_tokens(&pieces), vec![true, true, false]);
    }

    #[test]
    fn postprocess() {
        assert_eq!(general_postprocess("The answer, is"), "answer");
        assert_eq!(general_postprocess("北京。上海\n x"), "北京上海");
        assert_eq!(triviaqa_normalize("The_Beatles!"), "beatles");
    }
}
