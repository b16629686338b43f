//! What `eval-report` writes: Tables 3-5 as Markdown and CSV, and their grouped bar chart (one
//! panel per table, a group of bars per column (benchmark and metric), one bar per model in a
//! fixed colour).

use std::path::Path;

use llm_eval::tables::{self, ReferenceCell, Table};
use llm_eval::Report;
use plotters::prelude::*;

use crate::plot::{png_atomically, DrawError, PlotError};

/// Pixels per panel.
const PANEL: (u32, u32) = (1100, 360);

/// Write `table{3,4,5}.{md,csv}`, `report.md` (the three tables) and `report.png` under `out`,
/// each atomically; return the tables and report.md's text.
pub fn write_report(
    reports: &[Report],
    reference: &[ReferenceCell],
    out: &Path,
) -> Result<(Vec<Table>, String), PlotError> {
    let tables = tables::build(reports, reference);
    std::fs::create_dir_all(out).map_err(|e| PlotError {
        path: out.to_path_buf(),
        message: format!("cannot create the folder: {e}"),
    })?;
    let write = |name: String, text: &str| {
        let p = out.join(name);
        llama_spec::atomic::write_atomic(&p, text.as_bytes()).map_err(|e| PlotError {
            path: p,
            message: e.to_string(),
        })
    };
    let mut all = String::new();
    for t in &tables {
        write(format!("{}.md", t.layout.id), &t.markdown())?;
        write(format!("{}.csv", t.layout.id), &t.csv())?;
        all.push_str(&t.markdown());
        all.push('\n');
    }
    write("report.md".into(), &all)?;
    draw(&tables, &out.join("report.png"))?;
    Ok((tables, all))
}

/// Draw the tables that have rows into one PNG at `out` (written atomically).
pub fn draw(tables: &[Table], out: &Path) -> Result<(), PlotError> {
    let shown: Vec<&Table> = tables.iter().filter(|t| !t.rows.is_empty()).collect();
    png_atomically(out, |tmp| {
        if shown.is_empty() {
            return Err(DrawError("no results to draw".into()));
        }
        let size = (PANEL.0, PANEL.1 * shown.len() as u32);
        let root = BitMapBackend::new(tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(DrawError::of)?;
        // One colour per model in every panel: its place in the order models first appear.
        let mut models: Vec<(&str, bool)> = Vec::new();
        for r in shown.iter().flat_map(|t| &t.rows) {
            if !models.contains(&(r.model.as_str(), r.reference)) {
                models.push((r.model.as_str(), r.reference));
            }
        }
        for (area, table) in root.split_evenly((shown.len(), 1)).iter().zip(&shown) {
            panel(area, table, &models)?;
        }
        root.present().map_err(DrawError::of)
    })
}

fn panel(
    area: &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    t: &Table,
    all_models: &[(&str, bool)],
) -> Result<(), DrawError> {
    let cols = t.layout.columns.len();
    let models = t.rows.len();
    let top = t
        .rows
        .iter()
        .flat_map(|r| r.cells.iter().flatten())
        .fold(0.0f64, |a, &b| a.max(b));
    let y1 = if top <= 100.0 { 100.0 } else { top * 1.05 };
    let mut chart = ChartBuilder::on(area)
        .caption(t.layout.title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(34)
        .y_label_area_size(44)
        .build_cartesian_2d(0f64..cols as f64, 0f64..y1)
        .map_err(DrawError::of)?;
    let labels: Vec<String> = t
        .layout
        .columns
        .iter()
        .map(|c| format!("{} {}", c.task, c.metric))
        .collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(cols * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 1e-6 && i < labels.len() {
                labels[i].clone()
            } else {
                String::new()
            }
        })
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(DrawError::of)?;
    let width = 0.8 / models.max(1) as f64;
    for (m, row) in t.rows.iter().enumerate() {
        let key = (row.model.as_str(), row.reference);
        let color =
            Palette99::pick(all_models.iter().position(|k| *k == key).unwrap_or(m)).to_rgba();
        let bars: Vec<Rectangle<(f64, f64)>> = row
            .cells
            .iter()
            .enumerate()
            .filter_map(|(c, v)| {
                let x = c as f64 + 0.1 + m as f64 * width;
                v.map(|v| Rectangle::new([(x, 0.0), (x + width * 0.9, v)], color.filled()))
            })
            .collect();
        let label = if row.reference {
            format!("{} (reference)", row.model)
        } else {
            row.model.clone()
        };
        chart
            .draw_series(bars)
            .map_err(DrawError::of)?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(DrawError::of)
}
