//! Results: JSON per run (what `cloud-train sweep collect` reads as `eval.json`) and markdown
//! tables laid out like the paper's Tables 3 and 4 (rows = models, columns = benchmarks).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::tasks::TASKS;

/// One task's outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskResult {
    pub task: String,
    pub n: usize,
    /// Metric name -> value (0-100).
    pub metrics: BTreeMap<String, f64>,
    /// The metric that enters the average (absent for measurements such as `zh-fraction`).
    pub primary: Option<String>,
    /// The shots given to a task whose shot count is a choice (WMT22).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shots: Option<usize>,
    /// Prompts rendered through the model's chat template.
    #[serde(default)]
    pub chat: bool,
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub model: String,
    pub data_dir: String,
    pub limit: Option<usize>,
    /// Benchmark -> its primary metric (0-100): the objective's inputs.
    pub scores: BTreeMap<String, f64>,
    /// Mean of `scores` (the sweep's metric objective); absent when no benchmark ran.
    pub average: Option<f64>,
    /// Share of Chinese tokens in replies to the dialogue prompts (%), when measured.
    pub zh_fraction: Option<f64>,
    pub tasks: BTreeMap<String, TaskResult>,
    pub seconds: f64,
}

impl Report {
    pub fn new(
        model: String,
        data_dir: &Path,
        limit: Option<usize>,
        tasks: BTreeMap<String, TaskResult>,
        seconds: f64,
    ) -> Self {
        let scores: BTreeMap<String, f64> = tasks
            .iter()
            .filter_map(|(k, r)| {
                let p = r.primary.as_ref()?;
                Some((k.clone(), *r.metrics.get(p)?))
            })
            .collect();
        let average =
            (!scores.is_empty()).then(|| scores.values().sum::<f64>() / scores.len() as f64);
        let zh_fraction = tasks
            .get("zh-fraction")
            .and_then(|r| r.metrics.get("zh_fraction").copied());
        Self {
            model,
            data_dir: data_dir.display().to_string(),
            limit,
            scores,
            average,
            zh_fraction,
            tasks,
            seconds,
        }
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| EvalError::io(path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| EvalError::data(path, format!("not an eval report: {e}")))
    }

    /// Write as pretty JSON, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let json =
            serde_json::to_string_pretty(self).map_err(|e| EvalError::Other(e.to_string()))?;
        llama_spec::atomic::write_atomic(path, json.as_bytes()).map_err(|e| EvalError::io(path, e))
    }
}

/// A markdown table: one row per report, one column per benchmark (the paper's order), the
/// average, and the Chinese-token fraction when measured. Each header names the metric.
pub fn markdown(reports: &[Report]) -> String {
    let cols: Vec<&str> = TASKS
        .iter()
        .copied()
        .filter(|t| *t != "zh-fraction" && reports.iter().any(|r| r.scores.contains_key(*t)))
        .collect();
    let zh = reports.iter().any(|r| r.zh_fraction.is_some());
    let mut s = String::from("| model |");
    for c in &cols {
        let metric = crate::tasks::primary_metric(c).unwrap_or("");
        s.push_str(&format!(" {c} ({metric}) |"));
    }
    s.push_str(" avg |");
    if zh {
        s.push_str(" zh tokens % |");
    }
    s.push_str("\n| --- |");
    for _ in 0..cols.len() + 1 + usize::from(zh) {
        s.push_str(" ---: |");
    }
    s.push('\n');
    let cell = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |x| format!("{x:.1}"));
    for r in reports {
        s.push_str(&format!("| {} |", r.model));
        for c in &cols {
            s.push_str(&format!(" {} |", cell(r.scores.get(*c).copied())));
        }
        s.push_str(&format!(" {} |", cell(r.average)));
        if zh {
            s.push_str(&format!(" {} |", cell(r.zh_fraction)));
        }
        s.push('\n');
    }
    s
}
