//! `cloud-train plot`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct PlotArgs {
    /// One or more metrics.jsonl files (several runs share the chart, labelled by folder).
    #[arg(long, required = true, num_args = 1..)]
    metrics: Vec<PathBuf>,
    #[arg(long, default_value = "loss.png")]
    out: PathBuf,
    /// Training tokens on the x axis instead of steps.
    #[arg(long)]
    tokens: bool,
    /// The series: `loss`, or another metric such as DPO's `rewards/margins`.
    #[arg(long, default_value = "loss")]
    y: String,
    #[arg(long, default_value_t = 1000)]
    width: u32,
    #[arg(long, default_value_t = 600)]
    height: u32,
}

pub fn run(a: PlotArgs) -> Result<()> {
    let runs = a
        .metrics
        .iter()
        .map(|m| cloud_train::plot::read_metrics(m, a.tokens, &a.y))
        .collect::<Result<Vec<_>, _>>()?;
    cloud_train::plot::plot(&runs, &a.out, a.tokens, &a.y, (a.width, a.height))?;
    let steps: usize = runs.iter().map(|r| r.train.len()).sum();
    println!(
        "plot: {} run(s), {steps} steps -> {}",
        runs.len(),
        a.out.display()
    );
    Ok(())
}
