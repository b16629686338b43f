//! F1 and exact match of the official CMRC 2018 evaluation script (`cmrc2018_evaluate.py`,
//! v5), also used for DRCD: answers and predictions are lower-cased and split into "mixed
//! segments" (each CJK character and each listed punctuation mark alone, runs of other text
//! through NLTK's word tokenizer); punctuation is dropped; F1 comes from the longest common
//! *substring* of the segment lists (not a bag of tokens, unlike SQuAD); EM compares the texts
//! with punctuation removed; both take the best over the gold answers.
//!
//! NLTK's `word_tokenize` is ported from `NLTKWordTokenizer` (nltk 3.x, the regexes of
//! `nltk/tokenize/destructive.py`) without its Punkt sentence splitting, i.e. what
//! `word_tokenize(text, preserve_line=True)` does: Punkt needs a model download, and answer
//! spans are one sentence.

use std::sync::OnceLock;

use fancy_regex::Regex;

use super::{py_split, py_strip};

/// The script's `sp_char` list (its two-character entry "……" can never equal one character).
const SP_CHAR: &[char] = &[
    '-', ':', '_', '*', '^', '/', '\\', '~', '`', '+', '=', '，', '。', '：', '？', '！', '“', '”',
    '；', '’', '《', '》', '·', '、', '「', '」', '（', '）', '－', '～', '『', '』',
];

fn is_cjk(c: char) -> bool {
    ('\u{4e00}'..='\u{9fa5}').contains(&c)
}

/// The script's `mixed_segmentation(text, rm_punc)`.
pub fn mixed_segmentation(text: &str, rm_punc: bool) -> Vec<String> {
    let lower = text.to_lowercase();
    let mut out = Vec::new();
    let mut temp = String::new();
    for c in py_strip(&lower).chars() {
        if rm_punc && SP_CHAR.contains(&c) {
            continue;
        }
        if is_cjk(c) || SP_CHAR.contains(&c) {
            if !temp.is_empty() {
                out.extend(word_tokenize(&temp));
                temp.clear();
            }
            out.push(c.to_string());
        } else {
            temp.push(c);
        }
    }
    if !temp.is_empty() {
        out.extend(word_tokenize(&temp));
    }
    out
}

/// The script's `remove_punctuation`.
pub fn remove_punctuation(text: &str) -> String {
    let lower = text.to_lowercase();
    py_strip(&lower)
        .chars()
        .filter(|c| !SP_CHAR.contains(c))
        .collect()
}

/// Length of the longest common substring of two segment lists (`find_lcs`).
fn lcs_substring(a: &[String], b: &[String]) -> usize {
    let mut best = 0;
    let mut prev = vec![0usize; b.len() + 1];
    for x in a {
        let mut cur = vec![0usize; b.len() + 1];
        for (j, y) in b.iter().enumerate() {
            if x == y {
                cur[j + 1] = prev[j] + 1;
                best = best.max(cur[j + 1]);
            }
        }
        prev = cur;
    }
    best
}

/// `calc_f1_score(answers, prediction)`, in [0, 1].
pub fn cmrc_f1(answers: &[String], prediction: &str) -> f64 {
    let pred = mixed_segmentation(prediction, true);
    answers
        .iter()
        .map(|a| {
            let ans = mixed_segmentation(a, true);
            let l = lcs_substring(&ans, &pred);
            if l == 0 {
                return 0.0;
            }
            let p = l as f64 / pred.len() as f64;
            let r = l as f64 / ans.len() as f64;
            2.0 * p * r / (p + r)
        })
        .fold(0.0, f64::max)
}

/// `calc_em_score(answers, prediction)`: 1.0 or 0.0.
pub fn cmrc_em(answers: &[String], prediction: &str) -> f64 {
    let p = remove_punctuation(prediction);
    if answers.iter().any(|a| remove_punctuation(a) == p) {
        1.0
    } else {
        0.0
    }
}

struct Rules {
    starting: Vec<(Regex, &'static str)>,
    punctuation: Vec<(Regex, &'static str)>,
    parens: (Regex, &'static str),
    dashes: (Regex, &'static str),
    ending: Vec<(Regex, &'static str)>,
    contractions: Vec<(Regex, &'static str)>,
}

fn rules() -> &'static Rules {
    static R: OnceLock<Rules> = OnceLock::new();
    R.get_or_init(|| {
        let re = |p: &str| Regex::new(p).unwrap_or_else(|e| panic!("built-in regex {p}: {e}"));
        let list = |v: &[(&str, &'static str)]| v.iter().map(|(p, s)| (re(p), *s)).collect();
        Rules {
            starting: list(&[
                ("([«“‘„]|[`]+)", " ${1} "),
                (r#"^""#, "``"),
                ("(``)", " ${1} "),
                (r#"([ \(\[{<])("|'{2})"#, "${1} `` "),
                (r"(?i)(?<!\w)(')(?!(?:re|ve|ll|m|t|s|d|n)\b)(?=\w)", "${1} "),
            ]),
            punctuation: list(&[
                (r#"([^\.])(\.)((?>[\]\)}>"'»”’ ]*))\s*$"#, "${1} ${2} ${3} "),
                (r"([:,])([^\d])", " ${1} ${2}"),
                ("([:,])$", " ${1} "),
                (r"\.{2,}", " ${0} "),
                ("[;@#$%&]", " ${0} "),
                ("[\u{2012}-\u{2015}]", " ${0} "),
                (r#"([^\.])(\.)([\]\)}>"']*)\s*$"#, "${1} ${2}${3} "),
                ("[?!]", " ${0} "),
                ("([^'])' ", "${1} ' "),
                ("[*]", " ${0} "),
            ]),
            parens: (re(r"[\]\[\(\)\{\}\<\>]"), " ${0} "),
            dashes: (re("--"), " -- "),
            ending: list(&[
                ("([»”’])", " ${1} "),
                ("''", " '' "),
                ("\"", " '' "),
                (r"\s+", " "),
                ("([^' ])('[sS]|'[mM]|'[dD]|') ", "${1} ${2} "),
                ("([^' ])('ll|'LL|'re|'RE|'ve|'VE|n't|N'T) ", "${1} ${2} "),
            ]),
            contractions: list(&[
                (r"(?i)\b(can)(not)\b", " ${1} ${2} "),
                (r"(?i)\b(d)('ye)\b", " ${1} ${2} "),
                (r"(?i)\b(gim)(me)\b", " ${1} ${2} "),
                (r"(?i)\b(gon)(na)\b", " ${1} ${2} "),
                (r"(?i)\b(got)(ta)\b", " ${1} ${2} "),
                (r"(?i)\b(lem)(me)\b", " ${1} ${2} "),
                (r"(?i)\b(more)('n)\b", " ${1} ${2} "),
                (r"(?i)\b(wan)(na)(?=\s)", " ${1} ${2} "),
                (r"(?i) ('t)(is)\b", " ${1} ${2} "),
                (r"(?i) ('t)(was)\b", " ${1} ${2} "),
            ]),
        }
    })
}

/// NLTK's `NLTKWordTokenizer().tokenize(text)`.
pub fn word_tokenize(text: &str) -> Vec<String> {
    let r = rules();
    let sub = |t: String, (re, s): &(Regex, &'static str)| re.replace_all(&t, *s).into_owned();
    let mut t = text.to_string();
    for rule in &r.starting {
        t = sub(t, rule);
    }
    for rule in &r.punctuation {
        t = sub(t, rule);
    }
    t = sub(t, &r.parens);
    t = sub(t, &r.dashes);
    t = format!(" {t} ");
    for rule in &r.ending {
        t = sub(t, rule);
    }
    for rule in &r.contractions {
        t = sub(t, rule);
    }
    py_split(&t).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nltk_doc_example() {
        let s = "Good muffins cost $3.88 (roughly 3,36 euros)\nin New York.  Please buy me\ntwo of them.\nThanks.";
        let want = "Good muffins cost $ 3.88 ( roughly 3,36 euros ) in New York. Please buy me two of them. Thanks .";
        assert_eq!(word_tokenize(s).join(" "), want);
    }

    #[test]
    fn f1_uses_longest_common_substring() {
        let a = vec!["北京大学".to_string()];
        assert_eq!(cmrc_f1(&a, "北京大学"), 1.0);
        // segments 北 京 大 学 vs 北 京 清 华 大 学: the longest common run is 北京 (2)
        let f = cmrc_f1(&a, "北京清华大学");
        assert!((f - 2.0 * (2.0 / 6.0) * 0.5 / (2.0 / 6.0 + 0.5)).abs() < 1e-12);
        assert_eq!(cmrc_em(&a, "北京大学。"), 1.0);
    }
}
