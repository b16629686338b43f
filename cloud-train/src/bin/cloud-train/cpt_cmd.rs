//! `cloud-train cpt`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use cloud_train::cpt::{self, CptConfig, Event, Resume};
use indicatif::{ProgressBar, ProgressStyle};

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

/// Read a TOML config and apply `key.path=value` overrides before checking it.
pub fn load_config(path: &Path, overrides: &[String]) -> Result<CptConfig> {
    let cfg: CptConfig = load_toml(path, overrides)?;
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(cfg)
}

/// A TOML file with `key.path=value` overrides applied, deserialized.
pub fn load_toml<T: serde::de::DeserializeOwned>(path: &Path, overrides: &[String]) -> Result<T> {
    Ok(cloud_train::cpt::config::load_toml(path, overrides)?)
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

/// The progress bar of a training command.
pub fn step_bar(name: &str, steps: u64) -> ProgressBar {
    ProgressBar::new(steps).with_style(
        ProgressStyle::with_template(&format!(
            "{name} {{bar:30}} {{pos}}/{{len}} steps {{msg}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}

/// `Event::Start` of a training loop: the bar's range and one line on what starts.
pub fn started(
    bar: &ProgressBar,
    name: &str,
    (first_step, total_steps): (u64, u64),
    params: usize,
    resumed_from: Option<PathBuf>,
    extra: &str,
) {
    bar.set_length(total_steps);
    bar.set_position(first_step);
    say(
        bar,
        match resumed_from {
            Some(p) => format!(
                "{name}: {params} parameters, resuming from {} at step {first_step}/{total_steps}",
                p.display()
            ),
            None => format!("{name}: {params} parameters, {total_steps} steps{extra}"),
        },
    );
}

pub fn run(a: RunArgs) -> Result<()> {
    let cfg = load_config(&a.config, &a.overrides)?;
    let resume = a.resume();
    let bar = step_bar("cpt", cfg.total_steps());
    let summary = cpt::run(&cfg, resume, |e| match e {
        Event::Start {
            first_step,
            total_steps,
            params,
            resumed_from,
        } => started(
            &bar,
            "cpt",
            (first_step, total_steps),
            params,
            resumed_from,
            &format!(", ALMR {}", cfg.data.almr),
        ),
        Event::Step(m) => {
            bar.set_position(m.step);
            bar.set_message(format!(
                "loss {:.4} lr {:.2e} {:.0} tok/s ALMR {:.3}",
                m.loss, m.lr, m.tokens_per_s, m.almr
            ));
            if let Some(v) = m.val_loss_combined {
                let per: Vec<String> = m
                    .val_loss
                    .iter()
                    .flatten()
                    .map(|(k, v)| format!("{k} {v:.4}"))
                    .collect();
                say(
                    &bar,
                    format!("step {}: val loss {v:.4} ({})", m.step, per.join(", ")),
                );
            }
        }
        Event::Saved(p) => say(&bar, format!("saved {}", p.display())),
        Event::Note(n) => say(&bar, format!("note: {n}")),
        Event::Line { .. } => {}
    })?;
    bar.finish_and_clear();
    if summary.rank != 0 {
        return Ok(());
    }
    if let Some(why) = &summary.stopped {
        println!("cpt: stopped early: {why}");
    }
    println!(
        "cpt: {} steps ({} this run), {} tokens, loss {}, val loss {}, realized ALMR {:.4} (target {}), {:.0} tokens/s, {:.1}s; checkpoint {}",
        summary.steps,
        summary.steps - summary.first_step,
        summary.tokens,
        summary.last_loss.map_or("-".into(), |l| format!("{l:.4}")),
        summary.val_loss_combined.map_or("-".into(), |l| format!("{l:.4}")),
        summary.almr,
        cfg.data.almr,
        summary.tokens_per_s,
        summary.elapsed_s,
        summary.last_checkpoint.map_or("none".into(), |p| p.display().to_string())
    );
    Ok(())
}
