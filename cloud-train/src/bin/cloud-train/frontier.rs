//! `cloud-train frontier`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use cloud_train::sweep::frontier::{intersect, Line};
use cloud_train::sweep::{grid, report};

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

pub fn run(a: FrontierArgs) -> Result<()> {
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
