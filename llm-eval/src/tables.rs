//! Results of several models laid out as the paper's Tables 3-5: rows are models (and, from a
//! reference file, the paper's own numbers), columns are benchmarks with their metric. Written
//! as Markdown and CSV.
//!
//! The grouping: Table 3, the general Chinese and English benchmarks (the Eq. 4 average);
//! Table 4, Chinese understanding, reading, summarization and translation; Table 5, emotional
//! intelligence and the Chinese share of replies. A column a model has no result for is `-`;
//! a row's average is over its present cells of the averaged columns, and only when all are
//! present.
//!
//! Reference file: CSV with a header `model,task,metric,value` (value on the 0-100 scale),
//! one cell a line; its rows are marked `(reference)`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{EvalError, Result};
use crate::report::Report;

/// One column: a task's metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub task: &'static str,
    pub metric: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// File stem (`table3`).
    pub id: &'static str,
    pub title: &'static str,
    pub columns: &'static [Column],
    /// Whether the table has an average column.
    pub average: bool,
}

const fn col(task: &'static str, metric: &'static str) -> Column {
    Column { task, metric }
}

pub const PAPER_TABLES: &[Layout] = &[
    Layout {
        id: "table3",
        title: "Table 3: Chinese and English benchmarks",
        columns: &[
            col("ceval", "acc"),
            col("mmlu", "acc"),
            col("agieval", "acc"),
            col("bbh", "acc"),
            col("gsm8k", "acc"),
            col("humaneval", "pass@1"),
            col("triviaqa", "em"),
        ],
        average: true,
    },
    Layout {
        id: "table4",
        title: "Table 4: Chinese tasks and translation",
        columns: &[
            col("cluewsc", "acc"),
            col("eprstmt", "acc"),
            col("cmrc", "em"),
            col("drcd", "em"),
            col("lcsts", "rougeL_jieba"),
            col("wmt22-zh-en", "bleu"),
            col("wmt22-en-zh", "bleu"),
        ],
        average: true,
    },
    Layout {
        id: "table5",
        title: "Table 5: emotional intelligence",
        columns: &[
            col("emotion", "acc"),
            col("emotion", "macro_f1"),
            col("emotion-gen", "acc"),
            col("turing", "human_rate"),
            col("belle", "score"),
            col("zh-fraction", "zh_fraction"),
        ],
        average: false,
    },
];

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub model: String,
    pub reference: bool,
    pub cells: Vec<Option<f64>>,
    pub average: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub layout: Layout,
    pub rows: Vec<Row>,
}

/// One cell of a reference file.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceCell {
    pub model: String,
    pub task: String,
    pub metric: String,
    pub value: f64,
}

/// Read a reference CSV (`model,task,metric,value`).
pub fn read_reference(path: &Path) -> Result<Vec<ReferenceCell>> {
    let rows = crate::tasks::io::read_csv(path, true)?;
    rows.iter()
        .enumerate()
        .map(|(i, r)| {
            let bad = |m: &str| EvalError::data(path, format!("line {}: {m}", i + 2));
            if r.len() != 4 {
                return Err(bad("expected model,task,metric,value"));
            }
            let value = r[3]
                .trim()
                .parse::<f64>()
                .map_err(|_| bad(&format!("value {:?} is not a number", r[3])))?;
            Ok(ReferenceCell {
                model: r[0].trim().to_string(),
                task: r[1].trim().to_string(),
                metric: r[2].trim().to_string(),
                value,
            })
        })
        .collect()
}

fn row(
    layout: &Layout,
    model: String,
    reference: bool,
    get: impl Fn(&Column) -> Option<f64>,
) -> Row {
    let cells: Vec<Option<f64>> = layout.columns.iter().map(&get).collect();
    let average = (layout.average && cells.iter().all(Option::is_some))
        .then(|| cells.iter().flatten().sum::<f64>() / cells.len() as f64);
    Row {
        model,
        reference,
        cells,
        average,
    }
}

/// The tables, each with the rows that have at least one of its cells.
pub fn build(reports: &[Report], reference: &[ReferenceCell]) -> Vec<Table> {
    let ref_models = reference_models(reference);
    let ref_cells: BTreeMap<(&str, &str, &str), f64> = reference
        .iter()
        .map(|c| {
            (
                (c.model.as_str(), c.task.as_str(), c.metric.as_str()),
                c.value,
            )
        })
        .collect();
    PAPER_TABLES
        .iter()
        .map(|layout| {
            let mut rows: Vec<Row> = ref_models
                .iter()
                .map(|m| {
                    row(layout, m.to_string(), true, |c| {
                        ref_cells.get(&(*m, c.task, c.metric)).copied()
                    })
                })
                .collect();
            rows.extend(reports.iter().map(|r| {
                row(layout, r.model.clone(), false, |c| {
                    r.tasks.get(c.task)?.metrics.get(c.metric).copied()
                })
            }));
            rows.retain(|r| r.cells.iter().any(Option::is_some));
            Table {
                layout: *layout,
                rows,
            }
        })
        .collect()
}

fn name(r: &Row) -> String {
    if r.reference {
        format!("{} (reference)", r.model)
    } else {
        r.model.clone()
    }
}

impl Table {
    pub fn markdown(&self) -> String {
        let cell = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |x| format!("{x:.1}"));
        let mut s = format!("**{}**\n\n| model |", self.layout.title);
        for c in self.layout.columns {
            s.push_str(&format!(" {} ({}) |", c.task, c.metric));
        }
        if self.layout.average {
            s.push_str(" avg |");
        }
        s.push_str("\n| --- |");
        for _ in 0..self.layout.columns.len() + usize::from(self.layout.average) {
            s.push_str(" ---: |");
        }
        s.push('\n');
        for r in &self.rows {
            s.push_str(&format!("| {} |", name(r)));
            for v in &r.cells {
                s.push_str(&format!(" {} |", cell(*v)));
            }
            if self.layout.average {
                s.push_str(&format!(" {} |", cell(r.average)));
            }
            s.push('\n');
        }
        s
    }

    /// `model,reference,{task}:{metric}...,avg`; empty for a missing cell.
    pub fn csv(&self) -> String {
        let quote = |s: &str| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        let num = |v: Option<f64>| v.map_or_else(String::new, |x| format!("{x:.4}"));
        let mut head = vec!["model".to_string(), "reference".to_string()];
        head.extend(
            self.layout
                .columns
                .iter()
                .map(|c| format!("{}:{}", c.task, c.metric)),
        );
        if self.layout.average {
            head.push("avg".into());
        }
        let mut s = head.join(",") + "\n";
        for r in &self.rows {
            let mut f = vec![quote(&r.model), r.reference.to_string()];
            f.extend(r.cells.iter().map(|v| num(*v)));
            if self.layout.average {
                f.push(num(r.average));
            }
            s.push_str(&(f.join(",") + "\n"));
        }
        s
    }
}

/// The models a reference file names, in file order.
pub fn reference_models(reference: &[ReferenceCell]) -> Vec<&str> {
    let mut models: Vec<&str> = Vec::new();
    for c in reference {
        if !models.contains(&c.model.as_str()) {
            models.push(&c.model);
        }
    }
    models
}
