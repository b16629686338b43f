//! `frontier`: surfaces, frontiers and the recommendation from a `results.csv`, and
//! `contours.png`, two panels like the paper's Figure 1 (validation loss, averaged metric).

use std::path::Path;

use plotters::prelude::*;

use super::frontier::{fit_surface, frontier, intersect, Frontier, Line, Point, Surface};
use super::grid::GridResult;
use super::SweepError;
use crate::plot::DrawError;

/// One fitted panel.
pub struct Panel {
    pub title: &'static str,
    pub points: Vec<Point>,
    pub surface: Box<dyn Surface>,
    pub loo_rmse: f64,
    pub frontier: Option<Frontier>,
}

pub struct Analysis {
    pub loss: Panel,
    pub metric: Option<Panel>,
    /// `(log10 LR, ALMR %)`.
    pub recommendation: Option<(f64, f64)>,
    /// The recommendation lies outside the grid's ranges (an extrapolation).
    pub outside_grid: bool,
}

fn panel(title: &'static str, points: Vec<Point>, sign: f64) -> Result<Panel, SweepError> {
    let (surface, loo_rmse) = fit_surface(&points).ok_or_else(|| {
        SweepError::Grid(format!(
            "{title}: cannot fit a surface to {} grid points (need at least 6 distinct)",
            points.len()
        ))
    })?;
    let mut lrs: Vec<f64> = points.iter().map(|p| p.log_lr).collect();
    lrs.sort_by(f64::total_cmp);
    lrs.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
    let frontier = frontier(surface.as_ref(), &lrs, (0.0, 100.0), sign);
    Ok(Panel {
        title,
        points,
        surface,
        loo_rmse,
        frontier,
    })
}

/// Fit both surfaces (the metric one when scores exist), the frontiers and their intersection.
pub fn analyze(rows: &[GridResult]) -> Result<Analysis, SweepError> {
    let loss_points: Vec<Point> = rows
        .iter()
        .filter(|r| r.val_loss.is_finite())
        .map(|r| Point {
            almr: r.almr_pct,
            log_lr: r.log10_lr,
            value: r.val_loss,
        })
        .collect();
    let metric_points: Vec<Point> = rows
        .iter()
        .filter_map(|r| {
            r.metric_avg.map(|m| Point {
                almr: r.almr_pct,
                log_lr: r.log10_lr,
                value: m,
            })
        })
        .collect();
    let loss = panel("validation loss", loss_points, -1.0)?;
    let metric = if metric_points.len() >= 6 {
        Some(panel("averaged metric", metric_points, 1.0)?)
    } else {
        None
    };
    let recommendation = match (&metric, &loss.frontier) {
        (Some(m), Some(l)) => m
            .frontier
            .as_ref()
            .and_then(|mf| intersect(mf.line, l.line)),
        _ => None,
    };
    let outside_grid = recommendation.is_some_and(|(x, a)| {
        let (xs, as_): (Vec<f64>, Vec<f64>) =
            loss.points.iter().map(|p| (p.log_lr, p.almr)).unzip();
        let range = |v: &[f64]| {
            (
                v.iter().copied().fold(f64::MAX, f64::min),
                v.iter().copied().fold(f64::MIN, f64::max),
            )
        };
        let ((x0, x1), (a0, a1)) = (range(&xs), range(&as_));
        x < x0 || x > x1 || a < a0 || a > a1
    });
    Ok(Analysis {
        loss,
        metric,
        recommendation,
        outside_grid,
    })
}

/// A viridis-like colour for `t` in [0, 1].
fn color(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 5] = [
        (68, 1, 84),
        (59, 82, 139),
        (33, 145, 140),
        (94, 201, 98),
        (253, 231, 37),
    ];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f64;
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Iso-line segments of `grid` (values at `xs[i]`, `ys[j]`, row-major by y) at `level`, by
/// marching squares.
fn iso_segments(xs: &[f64], ys: &[f64], grid: &[f64], level: f64) -> Vec<[(f64, f64); 2]> {
    let nx = xs.len();
    let v = |i: usize, j: usize| grid[j * nx + i];
    let mut segs = Vec::new();
    for j in 0..ys.len() - 1 {
        for i in 0..nx - 1 {
            let corners = [
                (xs[i], ys[j], v(i, j)),
                (xs[i + 1], ys[j], v(i + 1, j)),
                (xs[i + 1], ys[j + 1], v(i + 1, j + 1)),
                (xs[i], ys[j + 1], v(i, j + 1)),
            ];
            let mut cross = Vec::new();
            for k in 0..4 {
                let (a, b) = (corners[k], corners[(k + 1) % 4]);
                if (a.2 < level) != (b.2 < level) {
                    let t = (level - a.2) / (b.2 - a.2);
                    cross.push((a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1)));
                }
            }
            for pair in cross.chunks_exact(2) {
                segs.push([pair[0], pair[1]]);
            }
        }
    }
    segs
}

/// `contours.png` (or .svg, by extension): one panel per fitted surface.
pub fn draw(analysis: &Analysis, out: &Path) -> Result<(), SweepError> {
    let failed = |e: DrawError| SweepError::Run {
        path: out.to_path_buf(),
        message: e.0,
    };
    plotters::style::register_font("sans-serif", FontStyle::Normal, crate::plot::FONT)
        .map_err(|_| failed(DrawError("the embedded font does not load".into())))?;
    let panels: Vec<&Panel> = std::iter::once(&analysis.loss)
        .chain(analysis.metric.as_ref())
        .collect();
    let size = (620 * panels.len() as u32, 520);
    let is_svg = out.extension().is_some_and(|e| e == "svg");
    if is_svg {
        let root = SVGBackend::new(out, size).into_drawing_area();
        draw_on(&root, &panels, analysis).map_err(failed)?;
        root.present().map_err(|e| failed(DrawError::of(e)))?;
    } else {
        let root = BitMapBackend::new(out, size).into_drawing_area();
        draw_on(&root, &panels, analysis).map_err(failed)?;
        root.present().map_err(|e| failed(DrawError::of(e)))?;
    }
    Ok(())
}

fn draw_on<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    panels: &[&Panel],
    analysis: &Analysis,
) -> Result<(), DrawError>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| DrawError(format!("drawing: {e:?}"));
    root.fill(&WHITE).map_err(e)?;
    let areas = root.split_evenly((1, panels.len()));
    // Axes: the grid's ranges, widened to show the recommendation.
    let all: Vec<&Point> = panels.iter().flat_map(|p| p.points.iter()).collect();
    let (mut x0, mut x1) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), p| {
        (a.min(p.log_lr), b.max(p.log_lr))
    });
    let (mut a0, mut a1) = all.iter().fold((f64::MAX, f64::MIN), |(a, b), p| {
        (a.min(p.almr), b.max(p.almr))
    });
    if let Some((x, a)) = analysis.recommendation {
        (x0, x1, a0, a1) = (x0.min(x), x1.max(x), a0.min(a), a1.max(a));
    }
    let (px, pa) = ((x1 - x0).max(0.5) * 0.15, (a1 - a0).max(5.0) * 0.15);
    let (x0, x1, a0, a1) = (x0 - px, x1 + px, (a0 - pa).max(0.0), (a1 + pa).min(100.0));
    let n = 90;
    let xs: Vec<f64> = (0..=n)
        .map(|i| x0 + (x1 - x0) * i as f64 / n as f64)
        .collect();
    let ys: Vec<f64> = (0..=n)
        .map(|j| a0 + (a1 - a0) * j as f64 / n as f64)
        .collect();
    for (panel, area) in panels.iter().zip(&areas) {
        let grid: Vec<f64> = ys
            .iter()
            .flat_map(|&a| xs.iter().map(move |&x| panel.surface.value(a, x)))
            .collect();
        let (lo, hi) = grid
            .iter()
            .fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
        let span = (hi - lo).max(1e-12);
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "{} ({} fit, LOO RMSE {:.3})",
                    panel.title,
                    panel.surface.name(),
                    panel.loo_rmse
                ),
                ("sans-serif", 17),
            )
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(x0..x1, a0..a1)
            .map_err(e)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc("log10(learning rate)")
            .y_desc("ALMR (%)")
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(e)?;
        let (dx, dy) = ((x1 - x0) / n as f64, (a1 - a0) / n as f64);
        chart
            .draw_series(ys.iter().enumerate().flat_map(|(j, &a)| {
                let grid = &grid;
                xs.iter().enumerate().map(move |(i, &x)| {
                    let c = color((grid[j * (n + 1) + i] - lo) / span);
                    Rectangle::new(
                        [(x - dx / 2.0, a - dy / 2.0), (x + dx / 2.0, a + dy / 2.0)],
                        c.filled(),
                    )
                })
            }))
            .map_err(e)?;
        for k in 1..10 {
            let level = lo + span * k as f64 / 10.0;
            chart
                .draw_series(
                    iso_segments(&xs, &ys, &grid, level).into_iter().map(|s| {
                        PathElement::new(vec![s[0], s[1]], WHITE.mix(0.7).stroke_width(1))
                    }),
                )
                .map_err(e)?;
        }
        chart
            .draw_series(
                panel
                    .points
                    .iter()
                    .map(|p| Cross::new((p.log_lr, p.almr), 5, BLACK.stroke_width(2))),
            )
            .map_err(e)?;
        let mut line = |l: Line, c: RGBColor, label: String| -> Result<(), DrawError> {
            let pts: Vec<(f64, f64)> = (0..=40)
                .map(|i| {
                    let x = x0 + (x1 - x0) * f64::from(i) / 40.0;
                    (x, l.at(x))
                })
                .filter(|&(_, a)| a >= a0 && a <= a1)
                .collect();
            chart
                .draw_series(DashedLineSeries::new(pts, 8, 5, c.stroke_width(3)))
                .map_err(e)?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3))
                });
            Ok(())
        };
        if let Some(f) = &analysis.loss.frontier {
            line(
                f.line,
                RGBColor(230, 30, 30),
                format!(
                    "loss frontier ALMR = {:.2} log10(LR) + {:.2}",
                    f.line.slope, f.line.intercept
                ),
            )?;
        }
        if let Some(f) = analysis.metric.as_ref().and_then(|m| m.frontier.as_ref()) {
            line(
                f.line,
                RGBColor(255, 255, 255),
                format!(
                    "metric frontier ALMR = {:.2} log10(LR) + {:.2}",
                    f.line.slope, f.line.intercept
                ),
            )?;
        }
        if let Some((x, a)) = analysis.recommendation {
            chart
                .draw_series([Circle::new((x, a), 7, RGBColor(255, 60, 60).filled())])
                .map_err(e)?
                .label(format!("optimum: ALMR {a:.1} %, LR {:.2e}", 10f64.powf(x)))
                .legend(|(x, y)| Circle::new((x + 9, y), 5, RGBColor(255, 60, 60).filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(e)?;
    }
    Ok(())
}
