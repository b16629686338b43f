//! Multiple-choice tasks, scored by the log-likelihood of each choice (lm-evaluation-harness's
//! `output_type: multiple_choice`): `acc` takes the choice with the highest log-likelihood,
//! `acc_norm` divides it by the choice's length in characters first.

use std::path::Path;

use serde_json::Value;

use super::io::{field, files_ending, read_csv, read_jsonl};
use super::ChoiceItem;
use crate::error::{EvalError, Result};

const LETTERS: [&str; 4] = ["A", "B", "C", "D"];

fn letter_index(s: &str, path: &Path, at: usize) -> Result<usize> {
    LETTERS
        .iter()
        .position(|l| *l == s.trim())
        .ok_or_else(|| EvalError::data(path, format!("row {}: answer {s:?} is not A-D", at + 1)))
}

/// `{question}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\n{answer_prompt}`
fn abcd(question: &str, options: &[String], answer_prompt: &str) -> String {
    let mut s = crate::metrics::py_strip(question).to_string();
    for (l, o) in LETTERS.iter().zip(options) {
        s.push_str(&format!("\n{l}. {o}"));
    }
    s.push('\n');
    s.push_str(answer_prompt);
    s
}

/// The shared k-shot MMLU/C-Eval layout: description, then each shot's text + " " + answer,
/// joined by blank lines, then the question.
fn few_shot(description: &str, shots: &[(String, usize)], question: &str) -> String {
    let mut s = description.to_string();
    for (text, gold) in shots {
        s.push_str(text);
        s.push(' ');
        s.push_str(LETTERS[*gold]);
        s.push_str("\n\n");
    }
    s.push_str(question);
    s
}

fn choices_abcd() -> Vec<String> {
    LETTERS.iter().map(|l| format!(" {l}")).collect()
}

/// C-Eval's subjects that we name in Chinese in the description (lm-eval's `ceval-valid`
/// names all 52; others fall back to the file's subject name).
fn ceval_subject_zh(subject: &str) -> String {
    let known = [
        ("computer_network", "计算机网络"),
        ("operating_system", "操作系统"),
        ("computer_architecture", "计算机组成"),
        ("college_programming", "大学编程"),
        ("college_physics", "大学物理"),
        ("college_chemistry", "大学化学"),
        ("advanced_mathematics", "高等数学"),
        ("probability_and_statistics", "概率统计"),
        ("discrete_mathematics", "离散数学"),
        ("high_school_mathematics", "高中数学"),
        ("high_school_physics", "高中物理"),
        ("high_school_chemistry", "高中化学"),
        ("high_school_biology", "高中生物"),
        ("high_school_history", "高中历史"),
        ("high_school_geography", "高中地理"),
        ("high_school_chinese", "高中语文"),
        ("middle_school_mathematics", "初中数学"),
        ("chinese_language_and_literature", "中国语言文学"),
        ("modern_chinese_history", "近代史纲要"),
        (
            "ideological_and_moral_cultivation",
            "思想道德修养与法律基础",
        ),
        ("logic", "逻辑学"),
        ("law", "法学"),
        ("art_studies", "艺术学"),
        ("professional_tour_guide", "导游资格"),
        ("legal_professional", "法律职业资格"),
        ("physician", "医师资格"),
        ("teacher_qualification", "教师资格"),
        ("accountant", "注册会计师"),
        ("civil_servant", "公务员"),
        ("basic_medicine", "基础医学"),
        ("clinical_medicine", "临床医学"),
        ("education_science", "教育学"),
        (
            "mao_zedong_thought",
            "毛泽东思想和中国特色社会主义理论体系概论",
        ),
        ("marxism", "马克思主义基本原理"),
        ("sports_science", "体育学"),
        ("plant_protection", "植物保护"),
        ("veterinary_medicine", "兽医学"),
        ("metrology_engineer", "注册计量师"),
        ("electrical_engineer", "注册电气工程师"),
        (
            "environmental_impact_assessment_engineer",
            "环境影响评价工程师",
        ),
        ("fire_engineer", "注册消防工程师"),
        ("tax_accountant", "税务师"),
        ("urban_and_rural_planner", "注册城乡规划师"),
        ("business_administration", "工商管理"),
        ("college_economics", "大学经济学"),
        ("high_school_politics", "高中政治"),
        ("middle_school_biology", "初中生物"),
        ("middle_school_chemistry", "初中化学"),
        ("middle_school_geography", "初中地理"),
        ("middle_school_history", "初中历史"),
        ("middle_school_physics", "初中物理"),
        ("middle_school_politics", "初中政治"),
    ];
    known
        .iter()
        .find(|(k, _)| *k == subject)
        .map_or_else(|| subject.replace('_', " "), |(_, v)| v.to_string())
}

/// The C-Eval / MMLU file layout: `{bench}/{split}/{subject}_{split}.csv`, with shots from
/// `{bench}/dev/{subject}_dev.csv`; the question is column `q_col`, the four options follow,
/// then the answer letter.
struct SubjectCsv {
    bench: &'static str,
    split: &'static str,
    header: bool,
    q_col: usize,
    columns: &'static str,
    answer_prompt: &'static str,
}

const CEVAL: SubjectCsv = SubjectCsv {
    bench: "ceval",
    split: "val",
    header: true,
    q_col: 1,
    columns: "id,question,A,B,C,D,answer",
    answer_prompt: "答案：",
};

const MMLU: SubjectCsv = SubjectCsv {
    bench: "mmlu",
    split: "test",
    header: false,
    q_col: 0,
    columns: "question,A,B,C,D,answer",
    answer_prompt: "Answer:",
};

/// A subject file's rows as (question text, gold index).
fn subject_rows(path: &Path, spec: &SubjectCsv) -> Result<Vec<(String, usize)>> {
    let q = spec.q_col;
    read_csv(path, spec.header)?
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            if r.len() < q + 6 {
                return Err(EvalError::data(
                    path,
                    format!("row {}: want {}", i + 1, spec.columns),
                ));
            }
            Ok((
                abcd(&r[q], &r[q + 1..q + 5], spec.answer_prompt),
                letter_index(&r[q + 5], path, i)?,
            ))
        })
        .collect()
}

/// Every subject of a C-Eval/MMLU-style benchmark, 5-shot, `describe(subject)` first.
fn subject_task(
    dir: &Path,
    spec: &SubjectCsv,
    describe: impl Fn(&str) -> String,
) -> Result<Vec<ChoiceItem>> {
    let suffix = format!("_{}.csv", spec.split);
    let mut out = Vec::new();
    for path in files_ending(&dir.join(spec.bench).join(spec.split), &suffix)? {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let subject = name.trim_end_matches(suffix.as_str());
        let dev = dir
            .join(spec.bench)
            .join("dev")
            .join(format!("{subject}_dev.csv"));
        let shots: Vec<(String, usize)> = subject_rows(&dev, spec)?.into_iter().take(5).collect();
        let desc = describe(subject);
        for (i, (q, gold)) in subject_rows(&path, spec)?.into_iter().enumerate() {
            out.push(ChoiceItem {
                id: format!("{subject}/{i}"),
                context: few_shot(&desc, &shots, &q),
                choices: choices_abcd(),
                gold,
            });
        }
    }
    Ok(out)
}

/// C-Eval (validation split, 5-shot from dev), as lm-eval's `ceval-valid`:
/// `以下是中国关于{科目}的单项选择题，请选出其中的正确答案。\n\n` + shots + question, where a
/// question is `{q}\nA. ..\nB. ..\nC. ..\nD. ..\n答案：` and the choices are " A" ... " D".
pub fn ceval(dir: &Path) -> Result<Vec<ChoiceItem>> {
    subject_task(dir, &CEVAL, |s| {
        format!(
            "以下是中国关于{}的单项选择题，请选出其中的正确答案。\n\n",
            ceval_subject_zh(s)
        )
    })
}

/// MMLU (test split, 5-shot from dev) as lm-eval's `mmlu`: `The following are multiple choice
/// questions (with answers) about {subject}.\n\n` + shots + `{q}\nA. ..\nD. ..\nAnswer:`.
pub fn mmlu(dir: &Path) -> Result<Vec<ChoiceItem>> {
    subject_task(dir, &MMLU, |s| {
        format!(
            "The following are multiple choice questions (with answers) about {}.\n\n",
            s.replace('_', " ")
        )
    })
}

/// AGIEval, 0-shot, with AGIEval's own zero-shot prompts. Chinese tasks (`gaokao-*`,
/// `logiqa-zh`, `jec-qa-*`): `{passage}问题：{question} 选项：{options}\n答案：从A到{last}, 我们应选择`
/// and choices "A".."E"; English tasks: `{passage}Q: {question} Answer Choices: {options}\nA:
/// Among A through {last}, the answer is` and choices " A" ... Items whose label is a list
/// (multi-answer questions) are skipped: they are not single-choice.
pub fn agieval(dir: &Path) -> Result<Vec<ChoiceItem>> {
    let mut out = Vec::new();
    for path in files_ending(&dir.join("agieval"), ".jsonl")? {
        let name = path
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let zh = name.starts_with("gaokao") || name.contains("-zh") || name.starts_with("jec-qa");
        for (i, v) in read_jsonl(&path)?.into_iter().enumerate() {
            let Some(label) = v.get("label").and_then(Value::as_str) else {
                continue;
            };
            let question = field(&v, "question", &path, i)?;
            let options: Vec<String> = v
                .get("options")
                .and_then(Value::as_array)
                .ok_or_else(|| EvalError::data(&path, format!("record {}: no options", i + 1)))?
                .iter()
                .filter_map(|o| o.as_str().map(str::to_string))
                .collect();
            let letters: Vec<String> = (0..options.len())
                .map(|k| char::from(b'A' + k as u8).to_string())
                .collect();
            let gold = letters
                .iter()
                .position(|l| l == label.trim())
                .ok_or_else(|| {
                    EvalError::data(
                        &path,
                        format!("record {}: label {label:?} not among options", i + 1),
                    )
                })?;
            let passage = v.get("passage").and_then(Value::as_str).unwrap_or("");
            let last = letters.last().cloned().unwrap_or_default();
            let (context, delim) = if zh {
                (
                    format!(
                        "{passage}问题：{question} 选项：{}\n答案：从A到{last}, 我们应选择",
                        options.join(" ")
                    ),
                    "",
                )
            } else {
                (
                    format!("{passage}Q: {question} Answer Choices: {}\nA: Among A through {last}, the answer is", options.join(" ")),
                    " ",
                )
            };
            out.push(ChoiceItem {
                id: format!("{name}/{i}"),
                context,
                choices: letters.iter().map(|l| format!("{delim}{l}")).collect(),
                gold,
            });
        }
    }
    Ok(out)
}

/// CLUEWSC 2020 (CLUE's JSON lines: `text`, `target.span1_text`, `target.span2_text`,
/// `label` "true"/"false"): `{text}\n此处，代词“{span2}”指代的是“{span1}”吗？\n答：` with choices
/// "否" (false) and "是" (true).
pub fn cluewsc(dir: &Path) -> Result<Vec<ChoiceItem>> {
    let path = dir.join("cluewsc/dev.json");
    read_jsonl(&path)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let text = field(&v, "text", &path, i)?;
            let t = v.get("target").cloned().unwrap_or_default();
            let span1 = field(&t, "span1_text", &path, i)?;
            let span2 = field(&t, "span2_text", &path, i)?;
            let gold = match field(&v, "label", &path, i)? {
                "true" => 1,
                "false" => 0,
                l => {
                    return Err(EvalError::data(
                        &path,
                        format!("record {}: label {l:?}", i + 1),
                    ))
                }
            };
            Ok(ChoiceItem {
                id: format!("cluewsc/{i}"),
                context: format!("{text}\n此处，代词“{span2}”指代的是“{span1}”吗？\n答："),
                choices: vec!["否".into(), "是".into()],
                gold,
            })
        })
        .collect()
}

/// EPRSTMT (FewCLUE e-commerce reviews: `sentence`, `label` Positive/Negative), as
/// OpenCompass's PPL prompt: `内容： "{sentence}"。情绪分类：` with choices "消极", "积极".
pub fn eprstmt(dir: &Path) -> Result<Vec<ChoiceItem>> {
    let path = dir.join("eprstmt/dev_few_all.json");
    read_jsonl(&path)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let s = field(&v, "sentence", &path, i)?;
            let gold = match field(&v, "label", &path, i)? {
                "Positive" => 1,
                "Negative" => 0,
                l => {
                    return Err(EvalError::data(
                        &path,
                        format!("record {}: label {l:?}", i + 1),
                    ))
                }
            };
            Ok(ChoiceItem {
                id: format!("eprstmt/{i}"),
                context: format!("内容： \"{s}\"。情绪分类："),
                choices: vec!["消极".into(), "积极".into()],
                gold,
            })
        })
        .collect()
}

/// Generic multiple choice (`{"context", "choices", "gold"}` JSON lines, the layout of
/// lm-eval's custom multiple-choice tasks), every `*.jsonl` under `cloze/`. Choices carry
/// their own leading space where one is wanted. `configs/eval-data/cloze/` holds an in-domain
/// cloze set made from the sample corpora (`scripts/make-cloze.py`) for the tiny sweep demo.
pub fn cloze(dir: &Path) -> Result<Vec<ChoiceItem>> {
    let mut out = Vec::new();
    for path in files_ending(&dir.join("cloze"), ".jsonl")? {
        let stem = path
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (i, v) in read_jsonl(&path)?.into_iter().enumerate() {
            let context = field(&v, "context", &path, i)?.to_string();
            let choices: Vec<String> = v
                .get("choices")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let gold = v.get("gold").and_then(Value::as_u64).map(|g| g as usize);
            match gold {
                Some(g) if g < choices.len() && choices.len() >= 2 => out.push(ChoiceItem {
                    id: format!("{stem}/{i}"),
                    context,
                    choices,
                    gold: g,
                }),
                _ => {
                    return Err(EvalError::data(
                        &path,
                        format!(
                            "record {}: want 2+ string choices and a gold index among them",
                            i + 1
                        ),
                    ))
                }
            }
        }
    }
    Ok(out)
}
