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

/// A share `sum(hits) / sum(totals)` over units of unequal size (tokens of a reply, replies
/// of a file) with its 95 % confidence interval, in percent. The units, not the tokens, are the
/// sample: the interval is the ratio estimator's (linearized, with the `m / (m - 1)`
/// correction), `R +- 1.96 * sqrt(m / (m - 1) * sum((hit_i - R * total_i)^2)) / sum(total_i)`,
/// clipped to 0-100. Fewer than two units give a zero-width interval.
pub fn ratio_ci95(units: &[(usize, usize)]) -> (f64, f64, f64) {
    let hits: f64 = units.iter().map(|u| u.0 as f64).sum();
    let total: f64 = units.iter().map(|u| u.1 as f64).sum();
    if total == 0.0 {
        return (0.0, 0.0, 0.0);
    }
    let r = hits / total;
    let m = units.len() as f64;
    let half = if units.len() < 2 {
        0.0
    } else {
        let ss: f64 = units
            .iter()
            .map(|&(h, t)| (h as f64 - r * t as f64).powi(2))
            .sum();
        1.96 * (m / (m - 1.0) * ss).sqrt() / total
    };
    (
        100.0 * r,
        100.0 * (r - half).max(0.0),
        100.0 * (r + half).min(1.0),
    )
}

#[cfg(test)]
mod ratio_tests {
    /// By hand: units (3 of 4), (1 of 4), (0 of 2): R = 4/10 = 0.4; residuals 1.4, -0.6, -0.8;
    /// squares 1.96 + 0.36 + 0.64 = 2.96; sqrt(3/2 * 2.96) = sqrt(4.44) = 2.10713;
    /// half width 1.96 * 2.10713 / 10 = 0.41300 -> 40 % in [0 (clipped from -1.3), 81.30 %].
    #[test]
    fn ratio_interval_equals_the_hand_calculation() {
        let (r, lo, hi) = super::ratio_ci95(&[(3, 4), (1, 4), (0, 2)]);
        assert!((r - 40.0).abs() < 1e-12);
        assert_eq!(lo, 0.0);
        assert!((hi - 81.2997).abs() < 1e-3, "{hi}");
        assert_eq!(super::ratio_ci95(&[(2, 4)]), (50.0, 50.0, 50.0));
        assert_eq!(super::ratio_ci95(&[]), (0.0, 0.0, 0.0));
    }
}
