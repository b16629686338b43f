//! `cloud-train sweep`, `sweep collect` and `frontier`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use cloud_train::cpt::{self, Event, Resume};
use cloud_train::sweep::frontier::{intersect, Line};
use cloud_train::sweep::{grid, report};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cpt_cmd::say;

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
    /// Evaluate each finished run on these tasks (comma-separated, see `eval`) and write its
    /// eval.json: the averaged-metric objective of the frontier.
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
        let bar = ProgressBar::new(cfg.total_steps()).with_style(
            ProgressStyle::with_template(&format!(
                "sweep {}/{n} {} {{bar:24}} {{pos}}/{{len}} {{msg}}",
                i + 1,
                r.name
            ))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let s = cpt::run(cfg, Resume::Auto, |e| match e {
            Event::Step(m) => {
                bar.set_position(m.step);
                bar.set_message(format!("loss {:.4}", m.loss));
            }
            Event::Start { first_step, .. } => bar.set_position(first_step),
            Event::Note(t) => say(&bar, format!("note: {t}")),
            _ => {}
        })?;
        bar.finish_and_clear();
        println!(
            "sweep {}/{n} {}: {} steps, val loss {}, {:.0} tokens/s",
            i + 1,
            r.name,
            s.steps,
            s.val_loss_combined
                .map_or("-".into(), |v| format!("{v:.4}")),
            s.tokens_per_s
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
    cfg: &cloud_train::cpt::config::CptConfig,
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

#[derive(Args)]
pub struct FrontierArgs {
    /// results.csv from `sweep collect`.
    #[arg(long, required_unless_present = "lines")]
    results: Option<PathBuf>,
    /// Where contours.png, contours.svg and frontier.json go.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Intersect two given lines `SLOPE,INTERCEPT SLOPE,INTERCEPT` (ALMR % = slope *
    /// log10(LR) + intercept), e.g. the paper's `116.67,1085 -0.33,29.67`.
    #[arg(long, num_args = 2, allow_hyphen_values = true)]
    lines: Vec<String>,
}

fn parse_line(s: &str) -> Result<Line> {
    let (a, b) = s
        .split_once(',')
        .with_context(|| format!("--lines {s:?}: expected SLOPE,INTERCEPT"))?;
    Ok(Line {
        slope: a
            .trim()
            .parse()
            .with_context(|| format!("--lines {s:?}: slope"))?,
        intercept: b
            .trim()
            .parse()
            .with_context(|| format!("--lines {s:?}: intercept"))?,
    })
}

fn describe(x: f64, almr: f64) -> String {
    format!(
        "ALMR {almr:.2} %, LR {:.3e} (log10 LR {x:.3})",
        10f64.powf(x)
    )
}

pub fn frontier(a: FrontierArgs) -> Result<()> {
    if !a.lines.is_empty() {
        let (l1, l2) = (parse_line(&a.lines[0])?, parse_line(&a.lines[1])?);
        let (x, almr) = intersect(l1, l2).context("the lines are parallel")?;
        println!("frontier: the lines cross at {}", describe(x, almr));
        return Ok(());
    }
    let Some(results) = &a.results else {
        bail!("give --results results.csv or --lines");
    };
    let rows = grid::read_csv(results)?;
    let an = report::analyze(&rows)?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let fit = |p: &report::Panel| {
        let f = p.frontier.as_ref();
        serde_json::json!({
            "surface": p.surface.name(), "loo_rmse": p.loo_rmse,
            "frontier": f.map(|f| serde_json::json!({
                "line": f.line, "r2": f.r2, "points": f.points, "on_edge": f.on_edge})),
        })
    };
    println!(
        "frontier: {} grid points; loss surface {} (LOO RMSE {:.4})",
        an.loss.points.len(),
        an.loss.surface.name(),
        an.loss.loo_rmse
    );
    if let Some(f) = &an.loss.frontier {
        println!(
            "  loss frontier:   ALMR = {:.2} * log10(LR) + {:.2}  (R^2 {:.3}{})",
            f.line.slope,
            f.line.intercept,
            f.r2,
            if f.on_edge > 0 {
                format!(", {} optima on the ALMR range edge", f.on_edge)
            } else {
                String::new()
            }
        );
    }
    match &an.metric {
        Some(m) => {
            println!("  metric surface {} (LOO RMSE {:.4})", m.surface.name(), m.loo_rmse);
            if let Some(f) = &m.frontier {
                println!(
                    "  metric frontier: ALMR = {:.2} * log10(LR) + {:.2}  (R^2 {:.3})",
                    f.line.slope, f.line.intercept, f.r2
                );
            }
        }
        None => println!("  no averaged metric in {} (run the evaluation harness): the recommendation needs both frontiers", results.display()),
    }
    match an.recommendation {
        Some((x, almr)) => println!(
            "recommendation: {}{}",
            describe(x, almr),
            if an.outside_grid {
                "  WARNING: outside the grid, an extrapolation"
            } else {
                ""
            }
        ),
        None => println!("recommendation: none (needs a metric and a loss frontier that cross)"),
    }
    let json = serde_json::json!({
        "loss": fit(&an.loss), "metric": an.metric.as_ref().map(fit),
        "recommendation": an.recommendation.map(|(x, a)| serde_json::json!({
            "almr_pct": a, "lr": 10f64.powf(x), "log10_lr": x, "outside_grid": an.outside_grid})),
    });
    let p = a.out.join("frontier.json");
    llama_spec::atomic::write_atomic(&p, format!("{json:#}\n").as_bytes())?;
    for name in ["contours.png", "contours.svg"] {
        report::draw(&an, &a.out.join(name))?;
    }
    println!("frontier: wrote {} and contours.png/.svg", p.display());
    Ok(())
}
