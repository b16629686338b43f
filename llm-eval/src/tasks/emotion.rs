//! Emotion classification in the style of TAPTAP's: a text and a fixed set of emotion labels,
//! scored by log-likelihood over the labels (`emotion`) and by generation, reading the first
//! label the reply names (`emotion-gen`); accuracy and macro-F1.
//!
//! Data (under the data dir): `emotion/labels.tsv`, one label a line as `english<TAB>chinese`
//! (the label set, in order), and `emotion/test.jsonl` lines `{"text", "label"}` with the
//! English label. A text with any CJK character (`metrics::text::is_cjk`) is asked in Chinese
//! with the Chinese labels, any other in English.

use std::path::Path;

use serde_json::{json, Value};

use super::io::{field, read_jsonl, read_text};
use super::{ChoiceItem, GenItem};
use crate::error::{EvalError, Result};

/// The label set: (English, Chinese) names in file order.
pub fn labels(dir: &Path) -> Result<Vec<(String, String)>> {
    let path = dir.join("emotion/labels.tsv");
    let text = read_text(&path)?;
    let labels: Vec<(String, String)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            l.split_once('\t')
                .map(|(en, zh)| (en.trim().to_string(), zh.trim().to_string()))
                .ok_or_else(|| {
                    EvalError::data(
                        &path,
                        format!("line {}: expected english<TAB>chinese", i + 1),
                    )
                })
        })
        .collect::<Result<_>>()?;
    if labels.len() < 2 {
        return Err(EvalError::data(&path, "fewer than two labels"));
    }
    Ok(labels)
}

/// The items: (text, gold label index, asked in Chinese).
fn items(dir: &Path, labels: &[(String, String)]) -> Result<Vec<(String, usize, bool)>> {
    let path = dir.join("emotion/test.jsonl");
    read_jsonl(&path)?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let text = field(v, "text", &path, i)?.to_string();
            let label = field(v, "label", &path, i)?;
            let gold = labels
                .iter()
                .position(|(en, _)| en == label)
                .ok_or_else(|| {
                    EvalError::data(
                        &path,
                        format!("record {}: label {label:?} is not in labels.tsv", i + 1),
                    )
                })?;
            let zh = crate::metrics::text::has_cjk(&text);
            Ok((text, gold, zh))
        })
        .collect()
}

fn names(labels: &[(String, String)], zh: bool) -> Vec<String> {
    labels
        .iter()
        .map(|(en, cn)| if zh { cn.clone() } else { en.clone() })
        .collect()
}

/// By log-likelihood: `文本：{text}\n这段文本表达的情绪是：` + a Chinese label, or
/// `Text: {text}\nThe emotion expressed in this text is:` + ` {label}`.
pub fn choice(dir: &Path) -> Result<Vec<ChoiceItem>> {
    let labels = labels(dir)?;
    Ok(items(dir, &labels)?
        .into_iter()
        .enumerate()
        .map(|(i, (text, gold, zh))| {
            let (context, choices) = if zh {
                (
                    format!("文本：{text}\n这段文本表达的情绪是："),
                    names(&labels, true),
                )
            } else {
                (
                    format!("Text: {text}\nThe emotion expressed in this text is:"),
                    names(&labels, false)
                        .iter()
                        .map(|l| format!(" {l}"))
                        .collect(),
                )
            };
            ChoiceItem {
                id: format!("emotion/{i}"),
                context,
                choices,
                gold,
            }
        })
        .collect())
}

/// By generation: the label list in the prompt
/// (`文本：{text}\n从以下情绪中选择一个：{labels, "、"}\n情绪：` or
/// `Text: {text}\nChoose one emotion from: {labels, ", "}\nEmotion:`), a newline stops it, 16
/// tokens. `extra` holds the labels in the item's language and the gold index.
pub fn generation(dir: &Path) -> Result<Vec<GenItem>> {
    let labels = labels(dir)?;
    Ok(items(dir, &labels)?
        .into_iter()
        .enumerate()
        .map(|(i, (text, gold, zh))| {
            let names = names(&labels, zh);
            let prompt = if zh {
                format!(
                    "文本：{text}\n从以下情绪中选择一个：{}\n情绪：",
                    names.join("、")
                )
            } else {
                format!(
                    "Text: {text}\nChoose one emotion from: {}\nEmotion:",
                    names.join(", ")
                )
            };
            GenItem {
                id: format!("emotion-gen/{i}"),
                prompt,
                chat: false,
                max_tokens: 16,
                stop: vec!["\n".into()],
                refs: vec![names[gold].clone()],
                extra: Some(json!({"labels": names, "gold": gold})),
            }
        })
        .collect())
}

/// The label a reply names first (case-insensitive), if any.
pub fn parse_label(output: &str, labels: &[String]) -> Option<usize> {
    let lower = output.to_lowercase();
    labels
        .iter()
        .enumerate()
        .filter_map(|(k, l)| lower.find(&l.to_lowercase()).map(|at| (at, k)))
        .min()
        .map(|(_, k)| k)
}

/// Macro-averaged F1 (0-100) over the labels that occur as gold or as a prediction, as
/// scikit-learn's `f1_score(average="macro")` with its default labels; a missing prediction
/// (`None`) is wrong for its gold label and is no label of its own.
pub fn macro_f1(gold: &[usize], pred: &[Option<usize>]) -> f64 {
    let mut seen: Vec<usize> = gold
        .iter()
        .copied()
        .chain(pred.iter().flatten().copied())
        .collect();
    seen.sort_unstable();
    seen.dedup();
    if seen.is_empty() {
        return 0.0;
    }
    let f1s: Vec<f64> = seen
        .iter()
        .map(|&l| {
            let tp = gold
                .iter()
                .zip(pred)
                .filter(|(g, p)| **g == l && **p == Some(l))
                .count();
            let fp = gold
                .iter()
                .zip(pred)
                .filter(|(g, p)| **g != l && **p == Some(l))
                .count();
            let fn_ = gold
                .iter()
                .zip(pred)
                .filter(|(g, p)| **g == l && **p != Some(l))
                .count();
            let denom = 2 * tp + fp + fn_;
            if denom == 0 {
                0.0
            } else {
                2.0 * tp as f64 / denom as f64
            }
        })
        .collect();
    100.0 * f1s.iter().sum::<f64>() / f1s.len() as f64
}

/// The generation metrics: acc, macro_f1, and the share of replies naming no label
/// (`format_errors`, counted as wrong).
pub fn score_generation(items: &[GenItem], outputs: &[String]) -> Vec<(&'static str, f64)> {
    let mut gold = Vec::with_capacity(items.len());
    let mut pred = Vec::with_capacity(items.len());
    for (it, out) in items.iter().zip(outputs) {
        let extra = it.extra.as_ref().unwrap_or(&Value::Null);
        let labels: Vec<String> = extra["labels"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l.as_str().map(str::to_string))
            .collect();
        gold.push(extra["gold"].as_u64().unwrap_or(0) as usize);
        pred.push(parse_label(out, &labels));
    }
    let n = items.len().max(1) as f64;
    let right = gold
        .iter()
        .zip(&pred)
        .filter(|(g, p)| Some(**g) == **p)
        .count();
    let unparsed = pred.iter().filter(|p| p.is_none()).count();
    vec![
        ("acc", 100.0 * right as f64 / n),
        ("macro_f1", macro_f1(&gold, &pred)),
        ("format_errors", 100.0 * unparsed as f64 / n),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macro_f1_matches_a_hand_calculation() {
        // gold 0 0 1 2, pred 0 1 1 None: label 0: tp 1 fp 0 fn 1 -> 2/3; label 1: tp 1 fp 1
        // fn 0 -> 2/3; label 2: tp 0 fp 0 fn 1 -> 0. Macro: (2/3 + 2/3 + 0) / 3 = 4/9.
        let f1 = macro_f1(&[0, 0, 1, 2], &[Some(0), Some(1), Some(1), None]);
        assert!((f1 - 400.0 / 9.0).abs() < 1e-9, "{f1}");
        assert_eq!(macro_f1(&[1, 2], &[Some(1), Some(2)]), 100.0);
    }

    #[test]
    fn the_first_label_named_wins() {
        let labels: Vec<String> = ["joy", "sadness", "anger"].map(String::from).to_vec();
        assert_eq!(parse_label(" Sadness, maybe anger.", &labels), Some(1));
        assert_eq!(parse_label("I think anger or joy", &labels), Some(2));
        assert_eq!(parse_label("no idea", &labels), None);
        let zh: Vec<String> = ["喜悦", "悲伤"].map(String::from).to_vec();
        assert_eq!(parse_label("悲伤", &zh), Some(1));
    }
}
