//! `cloud-train sweep` and `sweep collect`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use cloud_train::cpt;
use cloud_train::sweep::grid;
use cloud_train::train::{Event, Resume};

use crate::common::{bar, opt4, say, step_message};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SweepArgs {
    #[command(subcommand)]
    action: Option<SweepAction>,
    /// The base CPT config; each run overrides only data.almr, train.lr and output.dir.
    #[arg(long)]
    config: Option<PathBuf>,
    /// ALMR values in percent, e.g. 10,20,33,50.
    #[arg(long, value_delimiter = ',')]
    almr: Vec<f64>,
    /// Learning rates, e.g. 1e-5,3e-5,1e-4.
    #[arg(long, value_delimiter = ',')]
    lr: Vec<f64>,
    /// The sweep directory (one run directory per grid point, sweep.json, results.csv).
    #[arg(long)]
    out: Option<PathBuf>,
    /// More overrides for every run (`--set train.steps=50`).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Write a Slurm job array (sweep.sbatch and one config per run) instead of running here.
    #[arg(long)]
    emit_slurm: bool,
    /// Evaluate each finished run on these tasks (comma-separated, see `eval`; `eq4`: the
    /// paper's Eq. 4 set, Table 3's benchmarks with BBH) and write its eval.json: the
    /// averaged-metric objective of the frontier.
    #[arg(long, value_delimiter = ',')]
    eval_tasks: Vec<String>,
    /// The benchmarks' data for --eval-tasks.
    #[arg(long, default_value = "configs/eval-data")]
    eval_data: PathBuf,
    /// Only the first N items of each task.
    #[arg(long)]
    eval_limit: Option<usize>,
}

#[derive(Subcommand)]
enum SweepAction {
    /// Gather every run's final validation losses (and eval.json scores) into results.csv.
    Collect { dir: PathBuf },
}

fn collect(dir: &Path) -> Result<PathBuf> {
    let (rows, missing) = grid::collect(dir)?;
    if !missing.is_empty() {
        eprintln!("collect: no validation loss yet for {}", missing.join(", "));
    }
    let p = dir.join("results.csv");
    llama_spec::atomic::write_atomic(&p, grid::to_csv(&rows).as_bytes())
        .with_context(|| format!("writing {}", p.display()))?;
    println!("collect: {} runs -> {}", rows.len(), p.display());
    Ok(p)
}

pub fn run(a: SweepArgs) -> Result<()> {
    if let Some(SweepAction::Collect { dir }) = &a.action {
        collect(dir)?;
        return Ok(());
    }
    let (Some(config), Some(out)) = (&a.config, &a.out) else {
        bail!("sweep needs --config, --almr, --lr and --out (or `sweep collect DIR`)");
    };
    let runs = grid::plan(config, &a.overrides, &a.almr, &a.lr, out)?;
    let eval = (!a.eval_tasks.is_empty()).then(|| grid::EvalPlan {
        tasks: a.eval_tasks.clone(),
        data_dir: a.eval_data.clone(),
        limit: a.eval_limit,
    });
    if let Some(e) = &eval {
        llm_eval::tasks::resolve(&e.tasks)?;
    }
    grid::write_index(out, &runs)?;
    if a.emit_slurm {
        let p = grid::emit_slurm(out, &runs, eval.as_ref())?;
        println!(
            "sweep: {} runs -> {} (submit with sbatch)",
            runs.len(),
            p.display()
        );
        return Ok(());
    }
    let n = runs.len();
    for (i, (r, cfg)) in runs.iter().enumerate() {
        if grid::finished(cfg) {
            println!("sweep {}/{n} {}: done already", i + 1, r.name);
            evaluate(i, n, r, cfg, eval.as_ref())?;
            continue;
        }
        let pb = bar(
            cfg.total_steps(),
            &format!(
                "sweep {}/{n} {} {{bar:24}} {{pos}}/{{len}} {{msg}}",
                i + 1,
                r.name
            ),
        );
        let s = cpt::run(cfg, Resume::Auto, |e| match e {
            Event::Step { step, metrics, .. } => {
                pb.set_position(step);
                pb.set_message(step_message(&metrics));
            }
            Event::Start { first_step, .. } => pb.set_position(first_step),
            Event::Note(t) => say(&pb, format!("note: {t}")),
            Event::Saved(_) => {}
        })?;
        pb.finish_and_clear();
        println!(
            "sweep {}/{n} {}: {} steps, val loss {}, {:.0} tokens/s",
            i + 1,
            r.name,
            s.run.steps,
            opt4(s.run.validation("val_loss_combined")),
            s.run.tokens_per_s
        );
        evaluate(i, n, r, cfg, eval.as_ref())?;
    }
    collect(out)?;
    Ok(())
}

fn evaluate(
    i: usize,
    n: usize,
    r: &grid::GridRun,
    cfg: &cpt::CptConfig,
    plan: Option<&grid::EvalPlan>,
) -> Result<()> {
    let Some(plan) = plan else { return Ok(()) };
    match grid::evaluate_run(cfg, plan, true)? {
        Some(rep) => println!(
            "sweep {}/{n} {}: eval average {} over {}",
            i + 1,
            r.name,
            rep.average.map_or("-".into(), |v| format!("{v:.2}")),
            plan.tasks.join(",")
        ),
        None => println!("sweep {}/{n} {}: evaluated already", i + 1, r.name),
    }
    Ok(())
}
