//! Generation tasks: greedy decoding until a stop sequence, then the task's metric.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::io::{field, read_json, read_jsonl, read_text};
use super::GenItem;
use crate::error::{EvalError, Result};
use crate::metrics::{self, text, BleuTokenizer};

fn item(
    id: String,
    prompt: String,
    max_tokens: usize,
    stop: &[&str],
    refs: Vec<String>,
) -> GenItem {
    GenItem {
        id,
        prompt,
        chat: false,
        max_tokens,
        stop: stop.iter().map(|s| s.to_string()).collect(),
        refs,
        extra: None,
    }
}

/// CMRC 2018 / DRCD (SQuAD-format JSON), OpenCompass's generation prompt:
/// `文章：{context}\n根据上文，回答如下问题：{question}\n答：`, stop at a newline, 50 tokens.
pub fn squad(dir: &Path, name: &str) -> Result<Vec<GenItem>> {
    let path = dir.join(name).join("dev.json");
    let v = read_json(&path)?;
    let data = v["data"]
        .as_array()
        .ok_or_else(|| EvalError::data(&path, "no \"data\" list (SQuAD format expected)"))?;
    let mut out = Vec::new();
    for article in data {
        for para in article["paragraphs"].as_array().into_iter().flatten() {
            let ctx = field(para, "context", &path, out.len())?;
            for qa in para["qas"].as_array().into_iter().flatten() {
                let q = field(qa, "question", &path, out.len())?;
                let id = qa["id"]
                    .as_str()
                    .map_or_else(|| out.len().to_string(), str::to_string);
                let refs: Vec<String> = qa["answers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a["text"].as_str().map(str::to_string))
                    .collect();
                if refs.is_empty() {
                    return Err(EvalError::data(&path, format!("question {id}: no answers")));
                }
                out.push(item(
                    id,
                    format!("文章：{ctx}\n根据上文，回答如下问题：{q}\n答："),
                    50,
                    &["\n"],
                    refs,
                ));
            }
        }
    }
    Ok(out)
}

/// LCSTS (`test.src.txt` / `test.tgt.txt`, one text per line, as OpenCompass distributes it):
/// `阅读以下文章，并给出简短的摘要：{text}\n摘要如下：`, stop at a newline, 64 tokens.
pub fn lcsts(dir: &Path) -> Result<Vec<GenItem>> {
    let src_path = dir.join("lcsts/test.src.txt");
    let tgt_path = dir.join("lcsts/test.tgt.txt");
    let src = read_text(&src_path)?;
    let tgt = read_text(&tgt_path)?;
    let (s, t): (Vec<&str>, Vec<&str>) = (src.lines().collect(), tgt.lines().collect());
    if s.len() != t.len() {
        return Err(EvalError::data(
            &tgt_path,
            format!(
                "{} lines but {} has {}",
                t.len(),
                src_path.display(),
                s.len()
            ),
        ));
    }
    Ok(s.iter()
        .zip(&t)
        .enumerate()
        .map(|(i, (s, t))| {
            item(
                format!("lcsts/{i}"),
                format!("阅读以下文章，并给出简短的摘要：{s}\n摘要如下："),
                64,
                &["\n"],
                vec![t.to_string()],
            )
        })
        .collect())
}

/// WMT22 general test sets as plain text (`{src}-{tgt}.src` / `.ref`, one segment per line), with
/// `shots` translated examples before each segment: zh->en
/// `Translate the following Chinese text to English.\n` then `Chinese: {s}\nEnglish: {r}\n\n` per
/// shot and `Chinese: {src}\nEnglish:`; en->zh `将下面的英文翻译成中文。\n`, `英文：{s}\n中文：{r}\n\n`,
/// `英文：{src}\n中文：`. The shots are the first `shots` lines of `{src}-{tgt}.dev.src` / `.dev.ref`
/// when they exist (e.g. WMT21's test set: `sacrebleu -t wmt21 -l zh-en --echo src`), else the
/// first `shots` test segments, which are then not scored. Stop at a newline, 160 tokens.
pub fn wmt(dir: &Path, src: &str, tgt: &str, shots: usize) -> Result<Vec<GenItem>> {
    let pair = |ext: &str| -> Result<Vec<String>> {
        let sp = dir.join(format!("wmt22/{src}-{tgt}.{ext}src"));
        let rp = dir.join(format!("wmt22/{src}-{tgt}.{ext}ref"));
        let s = read_text(&sp)?;
        let r = read_text(&rp)?;
        let (s, r): (Vec<&str>, Vec<&str>) = (s.lines().collect(), r.lines().collect());
        if s.len() != r.len() {
            return Err(EvalError::data(
                &rp,
                format!("{} lines, source has {}", r.len(), s.len()),
            ));
        }
        Ok(s.iter()
            .zip(&r)
            .flat_map(|(s, r)| [s.to_string(), r.to_string()])
            .collect())
    };
    let test = pair("")?;
    let dev_exists = dir.join(format!("wmt22/{src}-{tgt}.dev.src")).is_file();
    let dev = if dev_exists {
        pair("dev.")?
    } else {
        Vec::new()
    };
    let (examples, skip) = if shots == 0 {
        (&test[..0], 0)
    } else if dev_exists {
        (&dev[..], 0)
    } else {
        (&test[..], shots)
    };
    if examples.len() / 2 < shots || test.len() / 2 <= skip {
        return Err(EvalError::data(
            dir.join(format!("wmt22/{src}-{tgt}.src")),
            format!("{shots} shots asked for, too few segments"),
        ));
    }
    let (head, source, target) = if src == "zh" {
        (
            "Translate the following Chinese text to English.\n",
            "Chinese: ",
            "English:",
        )
    } else {
        ("将下面的英文翻译成中文。\n", "英文：", "中文：")
    };
    let mut prefix = head.to_string();
    for shot in examples.chunks(2).take(shots) {
        let space = if target.ends_with(':') { " " } else { "" };
        prefix.push_str(&format!(
            "{source}{}\n{target}{space}{}\n\n",
            shot[0], shot[1]
        ));
    }
    Ok(test
        .chunks(2)
        .enumerate()
        .skip(skip)
        .map(|(i, seg)| {
            item(
                format!("wmt22-{src}-{tgt}/{i}"),
                format!("{prefix}{source}{}\n{target}", seg[0]),
                160,
                &["\n"],
                vec![seg[1].clone()],
            )
        })
        .collect())
}

/// GSM8K (`question`, `answer` with `#### n`), 4-shot from the first train problems as
/// lm-eval's `gsm8k`: `Question: {q}\nAnswer: {worked answer}` blocks, then
/// `Question: {q}\nAnswer:`; stop at "Question:" or a blank line, 256 tokens.
pub fn gsm8k(dir: &Path) -> Result<Vec<GenItem>> {
    let train = dir.join("gsm8k/train.jsonl");
    let test = dir.join("gsm8k/test.jsonl");
    let mut shots = String::new();
    for (i, v) in read_jsonl(&train)?.iter().take(4).enumerate() {
        let q = field(v, "question", &train, i)?;
        let a = field(v, "answer", &train, i)?;
        shots.push_str(&format!("Question: {q}\nAnswer: {a}\n\n"));
    }
    read_jsonl(&test)?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let q = field(v, "question", &test, i)?;
            let a = field(v, "answer", &test, i)?;
            let gold = text::gsm8k_gold(a).ok_or_else(|| {
                EvalError::data(&test, format!("record {}: no `#### n` answer", i + 1))
            })?;
            Ok(item(
                format!("gsm8k/{i}"),
                format!("{shots}Question: {q}\nAnswer:"),
                256,
                &["Question:", "\n\n"],
                vec![gold],
            ))
        })
        .collect()
}

/// TriviaQA (the original JSON: `Data[].Question`, `Data[].Answer.Aliases`), 0-shot as
/// lm-eval's `triviaqa`: `Question: {q}?\nAnswer:`, stop at newline, ".", ","; 32 tokens.
pub fn triviaqa(dir: &Path) -> Result<Vec<GenItem>> {
    let path = dir.join("triviaqa/dev.json");
    let v = read_json(&path)?;
    let data = v["Data"]
        .as_array()
        .ok_or_else(|| EvalError::data(&path, "no \"Data\" list (TriviaQA's JSON expected)"))?;
    data.iter()
        .enumerate()
        .map(|(i, d)| {
            let q = field(d, "Question", &path, i)?;
            let mut refs: Vec<String> = d["Answer"]["Aliases"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect();
            if let Some(v) = d["Answer"]["Value"].as_str() {
                refs.push(v.to_string());
            }
            if refs.is_empty() {
                return Err(EvalError::data(
                    &path,
                    format!("record {}: no answer aliases", i + 1),
                ));
            }
            let id = d["QuestionId"]
                .as_str()
                .map_or_else(|| i.to_string(), str::to_string);
            Ok(item(
                id,
                format!("Question: {}?\nAnswer:", q.trim_end_matches('?')),
                32,
                &["\n", ".", ","],
                refs,
            ))
        })
        .collect()
}

/// Dialogue prompts for the Chinese-token fraction (`{"prompt", "system"?, "lang"?}` lines),
/// rendered with the model's chat template; 96 tokens each.
pub fn dialogue(dir: &Path) -> Result<Vec<GenItem>> {
    let path = dir.join("dialogue/prompts.jsonl");
    read_jsonl(&path)?
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let p = field(v, "prompt", &path, i)?;
            let mut it = item(format!("dialogue/{i}"), p.to_string(), 96, &[], Vec::new());
            it.chat = true;
            it.extra = Some(serde_json::json!({"system": v.get("system"), "lang": v.get("lang")}));
            Ok(it)
        })
        .collect()
}

/// The Chinese-token share of the replies (`zh_fraction`, %) with its 95 % interval over
/// replies (`zh_fraction_ci95_low`/`_high`, `metrics::ratio_ci95`), the counts, and the same
/// share per prompt language (`zh_fraction/{lang}`) when the prompts say theirs.
pub fn zh_fraction_metrics(items: &[GenItem], replies: &[(usize, usize)]) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    let (r, lo, hi) = metrics::ratio_ci95(replies);
    m.insert("zh_fraction".into(), r);
    m.insert("zh_fraction_ci95_low".into(), lo);
    m.insert("zh_fraction_ci95_high".into(), hi);
    m.insert(
        "tokens".into(),
        replies.iter().map(|u| u.1).sum::<usize>() as f64,
    );
    m.insert("replies".into(), replies.len() as f64);
    let mut by_lang: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
    for (it, &u) in items.iter().zip(replies) {
        if let Some(lang) = it.extra.as_ref().and_then(|e| e["lang"].as_str()) {
            by_lang.entry(lang).or_default().push(u);
        }
    }
    for (lang, units) in by_lang {
        m.insert(format!("zh_fraction/{lang}"), metrics::ratio_ci95(&units).0);
    }
    m
}

/// Per-item score (0 or 1, or an F1) for the itemwise tasks, for the sample log.
pub fn item_score(task: &str, item: &GenItem, output: &str) -> Option<f64> {
    match task {
        "cmrc" | "drcd" => Some(metrics::cmrc_em(&item.refs, output)),
        "gsm8k" => Some(f64::from(u8::from(
            text::last_number(output).is_some_and(|n| text::same_number(&n, &item.refs[0])),
        ))),
        "triviaqa" => Some(metrics::text::triviaqa_em(&item.refs, first_line(output))),
        "bbh" => Some(f64::from(u8::from(super::bbh::is_correct(
            output, &item.refs,
        )))),
        _ => None,
    }
}

fn first_line(s: &str) -> &str {
    crate::metrics::py_strip(s.split('\n').next().unwrap_or(""))
}

/// The task's metrics (0-100) over all items.
pub fn score(task: &str, items: &[GenItem], outputs: &[String]) -> BTreeMap<String, f64> {
    let n = items.len().max(1) as f64;
    let mean = |f: &dyn Fn(&GenItem, &String) -> f64| {
        100.0 * items.iter().zip(outputs).map(|(i, o)| f(i, o)).sum::<f64>() / n
    };
    let mut m = BTreeMap::new();
    match task {
        "cmrc" | "drcd" => {
            m.insert(
                "em".into(),
                mean(&|i, o| metrics::cmrc_em(&i.refs, first_line(o))),
            );
            m.insert(
                "f1".into(),
                mean(&|i, o| metrics::cmrc_f1(&i.refs, first_line(o))),
            );
        }
        "lcsts" => {
            let refs: Vec<String> = items.iter().map(|i| i.refs[0].clone()).collect();
            m.insert(
                "rougeL_jieba".into(),
                metrics::rouge_l_jieba(outputs, &refs),
            );
            m.insert("rougeL_char".into(), metrics::rouge_l_char(outputs, &refs));
        }
        "wmt22-zh-en" | "wmt22-en-zh" => {
            let tok = if task.ends_with("-zh") {
                BleuTokenizer::Zh
            } else {
                BleuTokenizer::Mteval13a
            };
            let hyps: Vec<String> = outputs.iter().map(|o| first_line(o).to_string()).collect();
            let refs = vec![items.iter().map(|i| i.refs[0].clone()).collect::<Vec<_>>()];
            m.insert("bleu".into(), metrics::corpus_bleu(&hyps, &refs, tok).score);
        }
        "bbh" => m = super::bbh::score(items, outputs),
        "emotion-gen" => {
            for (k, v) in super::emotion::score_generation(items, outputs) {
                m.insert(k.into(), v);
            }
        }
        "gsm8k" | "triviaqa" => {
            let key = if task == "gsm8k" { "acc" } else { "em" };
            m.insert(
                key.into(),
                mean(&|i, o| item_score(task, i, o).unwrap_or(0.0)),
            );
        }
        _ => {}
    }
    m
}

/// The system prompt a dialogue item carries in `extra`, if any.
pub fn system_prompt(item: &GenItem) -> Option<&str> {
    item.extra
        .as_ref()
        .and_then(|e| e.get("system"))
        .and_then(Value::as_str)
}
