//! `cloud-train eval-report`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use llm_eval::tables;
use llm_eval::Report;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Results JSON files written by `eval` (one row each, in this order).
    #[arg(required = true)]
    results: Vec<PathBuf>,
    /// Folder for table3/4/5.{md,csv}, report.md and report.png.
    #[arg(long, default_value = "eval-report")]
    out: PathBuf,
    /// Numbers to show beside ours (the paper's, or any earlier run): CSV with a header
    /// `model,task,metric,value`, values 0-100.
    #[arg(long)]
    reference: Option<PathBuf>,
}

pub fn run(a: ReportArgs) -> Result<()> {
    let reports: Vec<Report> = a
        .results
        .iter()
        .map(|p| Report::read(p))
        .collect::<Result<_, _>>()?;
    let reference = match &a.reference {
        Some(p) => tables::read_reference(p)?,
        None => Vec::new(),
    };
    let (tables, all) = cloud_train::eval_chart::write_report(&reports, &reference, &a.out)?;
    print!("{all}");
    let filled: usize = tables.iter().filter(|t| !t.rows.is_empty()).count();
    eprintln!(
        "eval-report: {} models, {} reference rows, {filled} of 3 tables -> {}",
        reports.len(),
        tables::reference_models(&reference).len(),
        a.out.display()
    );
    Ok(())
}
