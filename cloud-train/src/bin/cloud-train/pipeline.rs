//! `cloud-train pipeline`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use cloud_train::pipeline::{self, PipelineConfig, PipelineEvent};
use indicatif::ProgressBar;

use crate::common::{show, step_bar};

#[derive(Args)]
pub struct PipelineArgs {
    /// The pipeline's TOML config (configs/pipeline-demo.toml).
    #[arg(long)]
    config: PathBuf,
    /// Override a config value (`--set dir=runs/p2 --set 'cpt.set=["train.steps=2"]'`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

pub fn run(a: PipelineArgs) -> Result<()> {
    let cfg = PipelineConfig::from_file(&a.config, &a.overrides)?;
    let mut bar: Option<(&'static str, ProgressBar)> = None;
    let summary = pipeline::run(&cfg, |e| match e {
        PipelineEvent::Stage {
            index,
            total,
            name,
            done_already,
        } => {
            let what = if done_already {
                ": done already"
            } else {
                " ..."
            };
            println!("pipeline {}/{total} {name}{what}", index + 1);
        }
        PipelineEvent::Train(stage, e) => {
            let (_, b) = bar.get_or_insert_with(|| (stage, step_bar(stage)));
            show(b, stage, "", e);
        }
        PipelineEvent::Finished {
            index,
            total,
            name,
            seconds,
        } => {
            if let Some((_, b)) = bar.take() {
                b.finish_and_clear();
            }
            println!(
                "pipeline {}/{total} {name}: done in {seconds:.0} s",
                index + 1
            );
        }
    })?;
    println!("\n{}", summary.markdown);
    println!(
        "chat with it:\n  cargo run --release -p edge-chat -- --model {} --persona xiaonuan",
        summary.gguf.display()
    );
    Ok(())
}
