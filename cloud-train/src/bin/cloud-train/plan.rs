//! `cloud-train plan`: a training config's memory budget per GPU at every ZeRO stage, the
//! smallest world that fits, and the throughput its FLOP count predicts.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use cloud_train::align::AlignConfig;
use cloud_train::budget::{self, RunShape};
use cloud_train::cpt::CptConfig;
use cloud_train::train::config::{load_toml, ModelSection, TrainSection};
use cloud_train::train::{state, RunConfig};
use llama_spec::LlamaConfig;

#[derive(Args)]
pub struct PlanArgs {
    /// A `cpt`, `sft` or `dpo` TOML config.
    #[arg(long)]
    config: PathBuf,
    /// Override a config value, as in `cpt --set`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Which command the config is for (default: `cpt` when `[data]` lists corpora, `dpo` when
    /// it has a `[dpo]` section, else `sft`).
    #[arg(long, value_enum)]
    stage: Option<PlanStage>,
    /// Ranks, one GPU each.
    #[arg(long, default_value_t = 8)]
    gpus: usize,
    /// Memory per GPU, GiB (an 80 GB H100 or A100 has 79.6 GiB).
    #[arg(long, default_value_t = 79.6)]
    gpu_mem_gib: f64,
    /// Set aside per GPU, GiB: CUDA context, cuBLAS workspaces, NCCL, allocator slack.
    #[arg(long, default_value_t = budget::GPU_RESERVE_BYTES as f64 / budget::GIB)]
    reserve_gib: f64,
    /// The model's HF config.json (default: the one in `[model] path`, or `[model] config`).
    #[arg(long)]
    model_config: Option<PathBuf>,
    /// Peak dense TFLOP/s per GPU (default: `[train] peak_tflops`, else 989, H100 BF16).
    #[arg(long)]
    peak_tflops: Option<f64>,
    /// The model FLOPs utilization to expect.
    #[arg(long, default_value_t = 0.4)]
    mfu: f64,
    /// The largest world the search for the smallest fitting one tries.
    #[arg(long, default_value_t = 1024)]
    max_gpus: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PlanStage {
    Cpt,
    Sft,
    Dpo,
}

pub fn run(a: PlanArgs) -> Result<()> {
    let table: toml::Table = load_toml(&a.config, &a.overrides)?;
    let section = |name: &str| table.get(name).and_then(|v| v.as_table());
    let stage = a.stage.unwrap_or(
        if section("data").is_some_and(|d| d.contains_key("corpus")) {
            PlanStage::Cpt
        } else if section("dpo").is_some() {
            PlanStage::Dpo
        } else {
            PlanStage::Sft
        },
    );
    // (model, train, sequences per example, sequence length, optimizer steps if known)
    let (model, train, rows, seq_len, steps): (ModelSection, TrainSection, usize, usize, _) =
        match stage {
            PlanStage::Cpt => {
                let c = CptConfig::load(&a.config, &a.overrides)?;
                let steps = Some(c.total_steps());
                (c.model, c.train, 1, c.data.seq_len, steps)
            }
            PlanStage::Sft | PlanStage::Dpo => {
                let c = AlignConfig::load(&a.config, &a.overrides)?;
                let rows = if stage == PlanStage::Dpo { 2 } else { 1 };
                let steps = c.train.steps;
                (c.model, c.train, rows, c.data.max_len, steps)
            }
        };
    let hint = "the model's config (to plan before the checkpoint exists, pass --model-config \
                with an HF config.json, e.g. configs/models/llama3-8b.json)";
    let config = match &a.model_config {
        Some(f) => LlamaConfig::from_file(f).context(hint)?,
        None => state::model_config(&model, None).context(hint)?,
    };
    let shape = RunShape::of(&train, rows, seq_len);
    let device = (a.gpu_mem_gib * budget::GIB) as u64;
    let reserve = (a.reserve_gib * budget::GIB) as u64;
    let p = budget::ParamCounts::of(&config);
    println!(
        "{}: {:.2} B parameters, {} layers; mbs {} gbs {} seq {}, zero_stage {} in the config",
        a.config.display(),
        p.total as f64 / 1e9,
        config.num_hidden_layers,
        train.mbs,
        train.gbs,
        seq_len,
        train.zero_stage,
    );
    println!();
    print!(
        "{}",
        budget::table(&config, &shape, a.gpus, device, reserve, a.max_gpus)
    );
    println!();
    let peak = a.peak_tflops.or(train.peak_tflops).unwrap_or(989.0);
    let t = budget::throughput(&config, &shape, a.gpus, peak, a.mfu);
    let mut line = format!(
        "expected at {} GPUs x {peak} TFLOP/s x {:.0} % MFU ({:.3} GFLOP per token): {:.0} tokens/s, {:.1} s per step of {} x {} tokens",
        a.gpus,
        a.mfu * 100.0,
        budget::flops_per_token(&config, seq_len) / 1e9,
        t.tokens_per_s,
        t.step_s,
        shape.gbs * shape.rows_per_example,
        seq_len,
    );
    if let Some(steps) = steps {
        let hours = steps as f64 * t.step_s / 3600.0;
        line.push_str(&format!(", {steps} steps in {hours:.1} h"));
    }
    println!("{line}");
    let stage_now = budget::budget(&config, &shape, train.zero_stage, a.gpus, reserve);
    let verdict = if !budget::world_divides(&shape, a.gpus) {
        format!(
            "gbs {} is not a multiple of mbs {} x {} GPUs",
            train.gbs, train.mbs, a.gpus
        )
    } else if stage_now.total() <= device {
        "fits".into()
    } else {
        "does not fit".into()
    };
    println!(
        "the config as it is (ZeRO-{}): {:.1} GiB of {:.1} GiB per GPU: {verdict}",
        train.zero_stage,
        stage_now.total() as f64 / budget::GIB,
        a.gpu_mem_gib,
    );
    Ok(())
}
