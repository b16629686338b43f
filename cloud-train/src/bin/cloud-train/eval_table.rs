//! `cloud-train eval-table`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use llm_eval::Report;

#[derive(Args, Debug)]
pub struct TableArgs {
    /// Results JSON files written by `eval` (one row each, in this order).
    #[arg(required = true)]
    results: Vec<PathBuf>,
    /// Also write the table to this markdown file.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(a: TableArgs) -> Result<()> {
    let reports: Vec<Report> = a
        .results
        .iter()
        .map(|p| Report::read(p))
        .collect::<Result<_, _>>()?;
    let md = llm_eval::markdown(&reports);
    print!("{md}");
    if let Some(out) = a.out {
        llama_spec::atomic::write_atomic(&out, md.as_bytes())
            .with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}
