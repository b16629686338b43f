//! What several commands share: the arguments of a training run, and how a run's progress is
//! shown (a bar on a terminal, lines on stderr in cluster logs).

use std::path::PathBuf;

use clap::Args;
use cloud_train::train::{Event, Metrics, Resume};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

/// What every training command takes.
#[derive(Args)]
pub struct RunArgs {
    /// The run's TOML config (see configs/).
    #[arg(long)]
    pub config: PathBuf,
    /// Override a config value, e.g. `--set train.lr=1e-5 --set output.dir=runs/x`
    /// (the value is TOML; a bare word is a string).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Continue from this checkpoint (default: the newest one in the output dir, if any).
    #[arg(long, conflicts_with = "fresh")]
    pub resume: Option<PathBuf>,
    /// Start from the model, not from a checkpoint (refused if the output dir has any).
    #[arg(long)]
    pub fresh: bool,
}

impl RunArgs {
    pub fn resume(&self) -> Resume {
        match (&self.resume, self.fresh) {
            (Some(p), _) => Resume::From(p.clone()),
            (None, true) => Resume::Never,
            (None, false) => Resume::Auto,
        }
    }
}

/// A line above the progress bar, or on stderr when there is no terminal to draw it on (logs
/// of cluster jobs keep it).
pub fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// A progress bar with `template` (indicatif's syntax).
pub fn bar(len: u64, template: &str) -> ProgressBar {
    ProgressBar::new(len).with_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}

fn num(m: &Metrics, k: &str) -> Option<f64> {
    m.get(k).and_then(Value::as_f64)
}

/// The bar's message for a step: loss, learning rate, speed, and what the objective adds.
pub fn step_message(m: &Metrics) -> String {
    let mut s = format!(
        "loss {:.4} lr {:.2e} {:.0} tok/s",
        num(m, "loss").unwrap_or(f64::NAN),
        num(m, "lr").unwrap_or(f64::NAN),
        num(m, "tokens_per_s").unwrap_or(0.0)
    );
    if let Some(a) = num(m, "almr") {
        s += &format!(" ALMR {a:.3}");
    }
    if let (Some(g), Some(a)) = (num(m, "rewards/margins"), num(m, "rewards/accuracies")) {
        s += &format!(" margin {g:.3} acc {a:.2}");
    }
    s
}

/// The validation fields of a step's metrics, as one line.
pub fn validation_line(step: u64, m: &Metrics) -> String {
    let fields: Vec<String> = m
        .iter()
        .filter(|(k, _)| k.starts_with("val_"))
        .map(|(k, v)| match v {
            Value::Object(per) => {
                let per: Vec<String> = per
                    .iter()
                    .filter_map(|(c, x)| x.as_f64().map(|x| format!("{c} {x:.4}")))
                    .collect();
                format!("{k} ({})", per.join(", "))
            }
            v => format!("{k} {:.4}", v.as_f64().unwrap_or(f64::NAN)),
        })
        .collect();
    format!("step {step}: {}", fields.join(", "))
}

/// Shows a training run's events on `bar`; `start_note` ends the start line (", ALMR 0.33").
pub fn show(bar: &ProgressBar, name: &str, start_note: &str, e: Event) {
    match e {
        Event::Start {
            first_step,
            total_steps,
            params,
            resumed_from,
        } => {
            bar.set_length(total_steps);
            bar.set_position(first_step);
            say(
                bar,
                match resumed_from {
                    Some(p) => format!(
                        "{name}: {params} parameters, resuming from {} at step {first_step}/{total_steps}",
                        p.display()
                    ),
                    None => format!("{name}: {params} parameters, {total_steps} steps{start_note}"),
                },
            );
        }
        Event::Step {
            step,
            metrics,
            evaluated,
        } => {
            bar.set_position(step);
            bar.set_message(step_message(&metrics));
            if evaluated {
                say(bar, validation_line(step, &metrics));
            }
        }
        Event::Saved(p) => say(bar, format!("saved {}", p.display())),
        Event::Note(n) => say(bar, format!("note: {n}")),
    }
}

/// The progress bar of a training command.
pub fn step_bar(name: &str) -> ProgressBar {
    bar(
        0,
        &format!("{name} {{bar:30}} {{pos}}/{{len}} steps {{msg}} eta {{eta}}"),
    )
}

/// `x` with 4 decimals, or `-`.
pub fn opt4(x: Option<f64>) -> String {
    x.map_or("-".to_string(), |x| format!("{x:.4}"))
}

/// A safetensors dtype by name.
pub fn parse_dtype(s: &str) -> anyhow::Result<cloud_train::checkpoint::safetensors::Dtype> {
    use anyhow::Context;
    cloud_train::checkpoint::safetensors::Dtype::parse(s)
        .with_context(|| format!("dtype {s:?}: expected f32, f16 or bf16"))
}
