//! `cloud-train`: the trainer's command line, one file per command; each parses its arguments
//! and calls the library.

mod align;
mod bench_step;
mod common;
mod cpt;
mod data;
mod data_convert;
mod eval;
mod eval_report;
mod eval_table;
mod frontier;
mod init;
mod pipeline;
mod plan;
mod plot;
mod resave;
mod score;
mod sweep;

use anyhow::Result;
use clap::{Parser, Subcommand};
use cloud_train::align::Stage;

#[derive(Parser)]
#[command(
    version,
    about = "Continual pre-training, SFT and DPO of Llama-3 models on burn"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prepare training data.
    Data {
        #[command(subcommand)]
        command: data::DataCommand,
    },
    /// Continual pre-training on an ALMR mixture, from a TOML config; resumes by default.
    Cpt(common::RunArgs),
    /// Supervised fine-tuning on chat JSONL (loss on assistant tokens only).
    Sft(common::RunArgs),
    /// Direct Preference Optimization on preference JSONL (TRL's losses and metrics).
    Dpo(common::RunArgs),
    /// One CPT run per (ALMR, LR) grid point (here, resumable, or as a Slurm array);
    /// `sweep collect DIR` gathers results.csv.
    Sweep(sweep::SweepArgs),
    /// Fit the loss and metric surfaces of a sweep, the paper's two frontiers, and their
    /// intersection; draw contours.png.
    Frontier(frontier::FrontierArgs),
    /// Evaluate a checkpoint directory or a GGUF file on the benchmarks (C-Eval, MMLU, ...);
    /// writes results JSON (the `eval.json` that `sweep collect` reads) and prints a table.
    Eval(eval::EvalArgs),
    /// From the shipped GGUF and sample corpora to a quantized chatbot: CPT, SFT, DPO, export,
    /// quantization, evaluation before and after; resumable by stage.
    Pipeline(pipeline::PipelineArgs),
    /// One markdown table (rows = models, columns = benchmarks) from several `eval` results.
    EvalTable(eval_table::TableArgs),
    /// The paper's Tables 3-5 (Markdown, CSV) and a grouped bar chart (PNG) from several `eval`
    /// results, with reference numbers beside them.
    EvalReport(eval_report::ReportArgs),
    /// A config's memory per GPU at every ZeRO stage (weights, gradients, optimizer,
    /// activations, buffers), the smallest world that fits, and the expected throughput.
    Plan(plan::PlanArgs),
    /// Draw loss curves (train, and validation per corpus) from metrics.jsonl files as a PNG.
    Plot(plot::PlotArgs),
    /// Mean NLL and perplexity of a text file under a checkpoint (compare with transformers).
    Score(score::ScoreArgs),
    /// Load a checkpoint and save it again (dtype and shard size of your choice).
    Resave(resave::ResaveArgs),
    /// Time training steps (forward + backward + AdamW) on random data; prints tokens/s and
    /// peak memory. Compare with PyTorch: scripts/bench-train-vs-torch.py.
    BenchStep(bench_step::BenchStepArgs),
    /// Write a randomly initialized checkpoint for a config.json (from-scratch runs, benches).
    Init(init::InitArgs),
}

fn main() -> Result<()> {
    cloud_train::alloc::keep_freed_memory();
    match Cli::parse().command {
        Command::Data { command } => data::run(command),
        Command::Cpt(args) => cpt::run(args),
        Command::Sft(args) => align::run(args, Stage::Sft),
        Command::Dpo(args) => align::run(args, Stage::Dpo),
        Command::Sweep(args) => sweep::run(args),
        Command::Frontier(args) => frontier::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Pipeline(args) => pipeline::run(args),
        Command::EvalTable(args) => eval_table::run(args),
        Command::EvalReport(args) => eval_report::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Plot(args) => plot::run(args),
        Command::Score(args) => score::run(args),
        Command::Resave(args) => resave::run(args),
        Command::BenchStep(args) => bench_step::run(args),
        Command::Init(args) => init::run(args),
    }
}
