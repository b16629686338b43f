//! Corpus BLEU exactly as sacrebleu 2.x computes it by default (`corpus_bleu(hyps, [refs])`:
//! 4-gram, `exp` smoothing, no lowercasing), with its `13a` tokenizer (mteval-v13a, WMT's
//! default) and its `zh` tokenizer (each CJK character alone, then `13a`'s rules), including the
//! quirks of the originals (see [`is_sacrebleu_chinese`]).

use std::collections::HashMap;

use super::py_split;

/// sacrebleu's `tokenize=` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BleuTokenizer {
    #[serde(rename = "13a")]
    Mteval13a,
    Zh,
}

impl BleuTokenizer {
    pub fn name(self) -> &'static str {
        match self {
            Self::Mteval13a => "13a",
            Self::Zh => "zh",
        }
    }

    pub fn tokenize(self, line: &str) -> String {
        match self {
            Self::Mteval13a => tokenize_13a(line),
            Self::Zh => tokenize_zh(line),
        }
    }
}

/// A corpus BLEU score and its sufficient statistics (sacrebleu's `BLEUScore`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Bleu {
    pub score: f64,
    pub precisions: [f64; 4],
    pub bp: f64,
    pub sys_len: usize,
    pub ref_len: usize,
    pub correct: [usize; 4],
    pub total: [usize; 4],
}

/// Corpus BLEU of `hyps` against one or more reference streams (`refs[k][i]` is the k-th
/// reference of segment i), as `sacrebleu.corpus_bleu(hyps, refs, tokenize=...)`.
pub fn corpus_bleu(hyps: &[String], refs: &[Vec<String>], tok: BleuTokenizer) -> Bleu {
    let mut correct = [0usize; 4];
    let mut total = [0usize; 4];
    let (mut sys_len, mut ref_len) = (0usize, 0usize);
    for (i, hyp) in hyps.iter().enumerate() {
        let mut ref_counts: HashMap<Vec<&str>, usize> = HashMap::new();
        let mut ref_lens = Vec::new();
        let toks: Vec<String> = refs
            .iter()
            .filter_map(|stream| stream.get(i))
            .map(|r| tok.tokenize(r.trim_end_matches(super::py_isspace)))
            .collect();
        for t in &toks {
            let words: Vec<&str> = py_split(t).collect();
            ref_lens.push(words.len());
            for (ngram, c) in ngrams(&words) {
                let e = ref_counts.entry(ngram).or_insert(0);
                *e = (*e).max(c);
            }
        }
        let h = tok.tokenize(hyp.trim_end_matches(super::py_isspace));
        let words: Vec<&str> = py_split(&h).collect();
        sys_len += words.len();
        ref_len += closest_ref_len(words.len(), &ref_lens);
        for (ngram, c) in ngrams(&words) {
            let n = ngram.len() - 1;
            total[n] += c;
            correct[n] += c.min(ref_counts.get(&ngram).copied().unwrap_or(0));
        }
    }
    compute_bleu(correct, total, sys_len, ref_len)
}

fn ngrams<'a>(words: &[&'a str]) -> HashMap<Vec<&'a str>, usize> {
    let mut m = HashMap::new();
    for n in 1..=4 {
        for w in words.windows(n) {
            *m.entry(w.to_vec()).or_insert(0) += 1;
        }
    }
    m
}

/// The reference length closest to the hypothesis length; ties go to the shorter one.
fn closest_ref_len(hyp_len: usize, ref_lens: &[usize]) -> usize {
    let mut best: Option<(usize, usize)> = None;
    for &r in ref_lens {
        let d = hyp_len.abs_diff(r);
        best = match best {
            None => Some((d, r)),
            Some((bd, br)) if d < bd || (d == bd && r < br) => Some((d, r)),
            b => b,
        };
    }
    best.map_or(0, |(_, r)| r)
}

fn compute_bleu(correct: [usize; 4], total: [usize; 4], sys_len: usize, ref_len: usize) -> Bleu {
    let bp = if sys_len < ref_len {
        if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    let mut precisions = [0.0f64; 4];
    let mut out = Bleu {
        score: 0.0,
        precisions,
        bp,
        sys_len,
        ref_len,
        correct,
        total,
    };
    if correct.iter().all(|&c| c == 0) {
        return out;
    }
    let mut smooth = 1.0f64;
    for n in 0..4 {
        if total[n] == 0 {
            break;
        }
        precisions[n] = if correct[n] == 0 {
            smooth *= 2.0;
            100.0 / (smooth * total[n] as f64)
        } else {
            100.0 * correct[n] as f64 / total[n] as f64
        };
    }
    // sacrebleu's `my_log`: log(0) is floored to -9999999999.
    let log = |p: f64| if p == 0.0 { -9_999_999_999.0 } else { p.ln() };
    out.score = bp * (precisions.iter().map(|&p| log(p)).sum::<f64>() / 4.0).exp();
    out.precisions = precisions;
    out
}

/// sacrebleu's `TokenizerRegexp` (the language-dependent part of mteval-v13a), then
/// whitespace normalization.
fn tokenize_regexp(line: &str) -> String {
    let is_sym =
        |c: char| matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/');
    // 1. `([\{-\~\[-\` -\&\(-\+\:-\@\/])` -> ` \1 `
    let mut s = String::with_capacity(line.len() * 2);
    for c in line.chars() {
        if is_sym(c) {
            s.push(' ');
            s.push(c);
            s.push(' ');
        } else {
            s.push(c);
        }
    }
    let dot = |c: char| c == '.' || c == ',';
    let digit = |c: char| c.is_ascii_digit();
    // 2. `([^0-9])([\.,])` -> `\1 \2 `  (left to right, matches do not overlap)
    let s = pairwise(
        &s,
        |a, b| !digit(a) && dot(b),
        |a, b, o| {
            o.push(a);
            o.push(' ');
            o.push(b);
            o.push(' ');
        },
    );
    // 3. `([\.,])([^0-9])` -> ` \1 \2`
    let s = pairwise(
        &s,
        |a, b| dot(a) && !digit(b),
        |a, b, o| {
            o.push(' ');
            o.push(a);
            o.push(' ');
            o.push(b);
        },
    );
    // 4. `([0-9])(-)` -> `\1 \2 `
    let s = pairwise(
        &s,
        |a, b| digit(a) && b == '-',
        |a, b, o| {
            o.push(a);
            o.push(' ');
            o.push(b);
            o.push(' ');
        },
    );
    py_split(&s).collect::<Vec<_>>().join(" ")
}

/// `re.sub` of a two-character pattern: scan left to right, replace non-overlapping matches.
fn pairwise(
    s: &str,
    matches: impl Fn(char, char) -> bool,
    emit: impl Fn(char, char, &mut String),
) -> String {
    let cs: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 16);
    let mut i = 0;
    while i < cs.len() {
        if i + 1 < cs.len() && matches(cs[i], cs[i + 1]) {
            emit(cs[i], cs[i + 1], &mut out);
            i += 2;
        } else {
            out.push(cs[i]);
            i += 1;
        }
    }
    out
}

fn tokenize_13a(line: &str) -> String {
    let mut l = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if l.contains('&') {
        l = l
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    tokenize_regexp(&format!(" {l} "))
}

/// sacrebleu's `TokenizerZh._is_chinese_char`. Two of its ranges are written `u'\u20000'` and
/// `u'\u2f800'` (meant as U+20000 and U+2F800), which Python reads as two-character strings;
/// compared with one character they select U+2001..=U+2A6D and U+2F81..=U+2FA1 instead. We
/// reproduce that, since the point is to give sacrebleu's numbers (its U+2600..=U+27BF ranges
/// fall inside the first one).
pub fn is_sacrebleu_chinese(c: char) -> bool {
    matches!(c,
        '\u{3400}'..='\u{4db5}'
        | '\u{4e00}'..='\u{9fa5}'
        | '\u{9fa6}'..='\u{9fbb}'
        | '\u{f900}'..='\u{fa2d}'
        | '\u{fa30}'..='\u{fa6a}'
        | '\u{fa70}'..='\u{fad9}'
        | '\u{2001}'..='\u{2a6d}'
        | '\u{2f81}'..='\u{2fa1}'
        | '\u{ff00}'..='\u{ffef}'
        | '\u{2e80}'..='\u{2eff}'
        | '\u{3000}'..='\u{303f}'
        | '\u{31c0}'..='\u{31ef}'
        | '\u{2f00}'..='\u{2fdf}'
        | '\u{2ff0}'..='\u{2fff}'
        | '\u{3100}'..='\u{312f}'
        | '\u{31a0}'..='\u{31bf}'
        | '\u{fe10}'..='\u{fe1f}'
        | '\u{fe30}'..='\u{fe4f}'
        | '\u{3200}'..='\u{32ff}'
        | '\u{3300}'..='\u{33ff}')
}

fn tokenize_zh(line: &str) -> String {
    let mut s = String::with_capacity(line.len() * 2);
    for c in super::py_strip(line).chars() {
        if is_sacrebleu_chinese(c) {
            s.push(' ');
            s.push(c);
            s.push(' ');
        } else {
            s.push(c);
        }
    }
    tokenize_regexp(&s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_corpus_scores_100() {
        let h = vec!["The cat sat on the mat.".to_string()];
        let b = corpus_bleu(&h, std::slice::from_ref(&h), BleuTokenizer::Mteval13a);
        assert!((b.score - 100.0).abs() < 1e-9, "{b:?}");
    }

    #[test]
    fn thirteen_a_splits_punctuation_but_not_numbers() {
        assert_eq!(
            tokenize_13a("Hello, world. 3.5-4"),
            "Hello , world . 3.5 - 4"
        );
        assert_eq!(tokenize_zh("我爱你。ok"), "我 爱 你 。 ok");
    }
}
