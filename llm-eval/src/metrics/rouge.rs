//! ROUGE-L as OpenCompass scores LCSTS: each text through `general_postprocess`
//! ([`super::text::general_postprocess`]), segmented, then `rouge_chinese.Rouge().get_scores(
//! preds, refs, avg=True)["rouge-l"]["f"] * 100`. Two segmentations, named in every result:
//! - `jieba`: words from jieba (`' '.join(jieba.cut(text))`, HMM on), what OpenCompass's
//!   `JiebaRougeEvaluator` does;
//! - `char`: one token per non-space character (ROUGE over characters, the usual choice for
//!   Chinese summaries when no segmenter is wanted).
//!
//! rouge-chinese's ROUGE-L is its "summary level" variant over the whole token list: the LCS
//! of all hypothesis and reference words, `f = 2pr / (p + r + 1e-8)`. Sentences are first cut
//! on Chinese end punctuation (`cut_sent`), which only matters through the tokens it creates.

use std::sync::OnceLock;

use jieba_rs::Jieba;

use super::py_split;
use super::text::general_postprocess;

fn jieba() -> &'static Jieba {
    static J: OnceLock<Jieba> = OnceLock::new();
    J.get_or_init(Jieba::new)
}

/// `' '.join(jieba.cut(text))` (jieba's default dictionary, HMM for unknown words).
pub fn jieba_join(text: &str) -> String {
    jieba_cut(text).join(" ")
}

/// `jieba.cut(text)` (HMM on). jieba-rs 0.8 gives Python jieba's words except in one place:
/// the HMM step splits non-Chinese runs with `[a-zA-Z0-9]+(?:.\d+)?%?`, an unescaped `.`
/// where Python has `\.`, so "2-4" stays one word instead of "2", "-", "4". We re-split each
/// run of such pieces (made only of the characters jieba's blocks allow besides Chinese, and
/// not dictionary words) with Python's pattern.
pub fn jieba_cut(text: &str) -> Vec<String> {
    static SKIP: OnceLock<regex::Regex> = OnceLock::new();
    let skip = SKIP.get_or_init(|| {
        regex::Regex::new(r"[a-zA-Z0-9]+(?:\.\d+)?%?").unwrap_or_else(|e| panic!("{e}"))
    });
    let j = jieba();
    let ascii_piece = |w: &str| {
        w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "+#&._%-".contains(c))
            && !(w.chars().count() > 1 && j.has_word(w))
    };
    let mut out = Vec::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut Vec<String>| {
        if run.is_empty() {
            return;
        }
        let mut at = 0;
        for m in skip.find_iter(run) {
            if m.start() > at {
                out.push(run[at..m.start()].to_string());
            }
            out.push(m.as_str().to_string());
            at = m.end();
        }
        if at < run.len() {
            out.push(run[at..].to_string());
        }
        run.clear();
    };
    for w in j.cut(text, true) {
        if ascii_piece(w) {
            run.push_str(w);
        } else {
            flush(&mut run, &mut out);
            out.push(w.to_string());
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Mean ROUGE-L F (x100) over pairs, words by jieba: OpenCompass's `JiebaRougeEvaluator`.
pub fn rouge_l_jieba(preds: &[String], refs: &[String]) -> f64 {
    mean_rouge_l(preds, refs, jieba_join)
}

/// Mean ROUGE-L F (x100) over pairs, one token per non-space character.
pub fn rouge_l_char(preds: &[String], refs: &[String]) -> f64 {
    mean_rouge_l(preds, refs, |t| {
        t.chars()
            .filter(|c| !super::py_isspace(*c))
            .map(String::from)
            .collect::<Vec<_>>()
            .join(" ")
    })
}

fn mean_rouge_l(preds: &[String], refs: &[String], segment: impl Fn(&str) -> String) -> f64 {
    let n = preds.len().min(refs.len());
    if n == 0 {
        return 0.0;
    }
    let prep = |t: &str, placeholder: &str| {
        let s = segment(&general_postprocess(t));
        if s.is_empty() {
            placeholder.to_string()
        } else {
            s
        }
    };
    let sum: f64 = (0..n)
        .map(|i| {
            let p = prep(&preds[i], "__PREDPLACEHOLDER__");
            let r = prep(&refs[i], "__REFRPLACEHOLDER__");
            rouge_l_f(&p, &r)
        })
        .sum();
    100.0 * sum / n as f64
}

/// rouge-chinese's `Rouge().get_scores(hyp, ref)[0]["rouge-l"]["f"]` for one pair of
/// space-separated token strings.
pub fn rouge_l_f(hyp: &str, reference: &str) -> f64 {
    let h = words(hyp);
    let r = words(reference);
    if h.is_empty() || r.is_empty() {
        return 0.0; // rouge-chinese raises here; OpenCompass never passes an empty text
    }
    let l = lcs_len(&r, &h) as f64;
    let (p, rc) = (l / h.len() as f64, l / r.len() as f64);
    2.0 * ((p * rc) / (p + rc + 1e-8))
}

/// The token list rouge-chinese scores: sentences from `cut_sent` (kept when non-empty),
/// each whitespace-normalized, then all split on single spaces.
fn words(text: &str) -> Vec<String> {
    cut_sent(text)
        .into_iter()
        .filter(|s| !s.is_empty())
        .flat_map(|s| {
            let norm = py_split(&s).collect::<Vec<_>>().join(" ");
            norm.split(' ').map(str::to_string).collect::<Vec<_>>()
        })
        .collect()
}

const ENDS: [char; 4] = ['。', '！', '？', '?'];
const QUOTES: [char; 2] = ['”', '’'];

/// rouge-chinese's `cut_sent`: four `re.sub` passes, then `rstrip` and split on newlines.
fn cut_sent(para: &str) -> Vec<String> {
    let mut cs: Vec<char> = para.chars().collect();
    // ([。！？\?])([^”’]) -> \1\n\2
    cs = split_after(&cs, 1, |w| ENDS.contains(&w[0]), |c| !QUOTES.contains(&c));
    // (\.{6})([^”’]) -> \1\n\2
    cs = split_after(
        &cs,
        6,
        |w| w.iter().all(|&c| c == '.'),
        |c| !QUOTES.contains(&c),
    );
    // (\…{2})([^”’]) -> \1\n\2
    cs = split_after(
        &cs,
        2,
        |w| w.iter().all(|&c| c == '…'),
        |c| !QUOTES.contains(&c),
    );
    // ([。！？\?][”’])([^，。！？\?]) -> \1\n\2
    cs = split_after(
        &cs,
        2,
        |w| ENDS.contains(&w[0]) && QUOTES.contains(&w[1]),
        |c| c != '，' && !ENDS.contains(&c),
    );
    let s: String = cs.into_iter().collect();
    let s = s.trim_end_matches(super::py_isspace);
    s.split('\n').map(str::to_string).collect()
}

/// `re.sub("(A{k})(B)", "\1\n\2")`: at each position, a `k`-char head accepted by `head`
/// followed by one char accepted by `next` gets a newline between them; scanning resumes after
/// the match, as `re.sub` does.
fn split_after(
    cs: &[char],
    k: usize,
    head: impl Fn(&[char]) -> bool,
    next: impl Fn(char) -> bool,
) -> Vec<char> {
    let mut out = Vec::with_capacity(cs.len() + 8);
    let mut i = 0;
    while i < cs.len() {
        if i + k < cs.len() && head(&cs[i..i + k]) && next(cs[i + k]) {
            out.extend_from_slice(&cs[i..i + k]);
            out.push('\n');
            out.push(cs[i + k]);
            i += k + 1;
        } else {
            out.push(cs[i]);
            i += 1;
        }
    }
    out
}

fn lcs_len(x: &[String], y: &[String]) -> usize {
    let mut prev = vec![0usize; y.len() + 1];
    let mut cur = vec![0usize; y.len() + 1];
    for a in x {
        for (j, b) in y.iter().enumerate() {
            cur[j + 1] = if a == b {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[y.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_is_one() {
        assert!((rouge_l_f("a b c", "a b c") - 1.0).abs() < 1e-7);
        assert_eq!(rouge_l_f("a b", "c d"), 0.0);
    }

    #[test]
    fn cut_sent_splits_after_chinese_end_marks() {
        assert_eq!(
            cut_sent("你好。我很好！”好"),
            vec!["你好。", "我很好！”", "好"]
        );
    }
}
