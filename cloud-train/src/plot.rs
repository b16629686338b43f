//! `cloud-train plot`: loss curves from one or more `metrics.jsonl` files as a PNG: the
//! training loss (raw, faint, and smoothed) and the validation loss per corpus and combined.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

/// The font the labels are drawn with, embedded (see assets/LICENSE-DejaVu.txt).
pub(crate) const FONT: &[u8] = include_bytes!("../assets/DejaVuSans-ascii.ttf");

#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PlotError {
    pub path: PathBuf,
    pub message: String,
}

/// Why a chart could not be drawn (the caller names the file).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DrawError(pub String);

impl DrawError {
    pub fn of(e: impl std::fmt::Display) -> Self {
        DrawError(e.to_string())
    }
}

fn err(path: &Path, message: impl Into<String>) -> PlotError {
    PlotError {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// One run's curves.
#[derive(Debug, Clone, Default)]
pub struct Curves {
    pub label: String,
    /// (step, loss)
    pub train: Vec<(f64, f64)>,
    /// Per corpus (and "combined"): (step, loss)
    pub val: Vec<(String, Vec<(f64, f64)>)>,
}

/// Read a metrics file; `x_tokens` puts training tokens on the x axis instead of steps; `key`
/// is the series drawn (`loss`, or e.g. DPO's `rewards/margins`), with its validation
/// counterpart (`val_loss` per corpus and combined, or `val_<key>`).
pub fn read_metrics(path: &Path, x_tokens: bool, key: &str) -> Result<Curves, PlotError> {
    let text = std::fs::read_to_string(path).map_err(|e| err(path, e.to_string()))?;
    let label = path.parent().and_then(|p| p.file_name()).map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut c = Curves {
        label,
        ..Curves::default()
    };
    let mut push_val = |name: &str, x: f64, y: f64| match c.val.iter_mut().find(|(n, _)| n == name)
    {
        Some((_, v)) => v.push((x, y)),
        None => c.val.push((name.to_string(), vec![(x, y)])),
    };
    let mut train = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| err(path, format!("line {}: {e}", i + 1)))?;
        let axis = if x_tokens { "tokens" } else { "step" };
        let Some(x) = v[axis].as_f64() else {
            return Err(err(path, format!("line {}: no {axis:?}", i + 1)));
        };
        if let Some(y) = v[key].as_f64() {
            train.push((x, y));
        }
        let val = &v[format!("val_{key}")];
        if let Some(map) = val.as_object() {
            for (name, y) in map {
                if let Some(y) = y.as_f64() {
                    push_val(name, x, y);
                }
            }
        } else if let Some(y) = val.as_f64() {
            push_val("val", x, y);
        }
        if let Some(y) = v[format!("val_{key}_combined")].as_f64() {
            push_val("combined", x, y);
        }
    }
    c.train = train;
    if c.train.is_empty() {
        return Err(err(path, format!("no {key:?} logged")));
    }
    Ok(c)
}

/// Exponential moving average with bias correction (as TensorBoard's smoothing).
pub fn smooth(points: &[(f64, f64)], weight: f64) -> Vec<(f64, f64)> {
    let mut avg = 0.0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, y))| {
            avg = avg * weight + (1.0 - weight) * y;
            (x, avg / (1.0 - weight.powi(i as i32 + 1)))
        })
        .collect()
}

/// Draw `runs` into a `width x height` PNG at `out` (written atomically).
pub fn plot(
    runs: &[Curves],
    out: &Path,
    x_tokens: bool,
    key: &str,
    size: (u32, u32),
) -> Result<(), PlotError> {
    png_atomically(out, |tmp| draw(runs, tmp, x_tokens, key, size))
}

/// Draw a PNG with `draw` into a temporary file beside `out`, then fsync and rename it over
/// `out`; the embedded font is registered first.
pub(crate) fn png_atomically(
    out: &Path,
    draw: impl FnOnce(&Path) -> Result<(), DrawError>,
) -> Result<(), PlotError> {
    // Registering twice is harmless; a bad font would be a build problem, reported here.
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| err(out, "the embedded font does not load"))?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .ok_or_else(|| err(out, "no file name"))?
        .to_string_lossy()
        .into_owned();
    // The image encoder picks the format by extension: keep `.png` last in the temp name.
    let tmp = dir.join(format!(".{name}.{}.tmp.png", std::process::id()));
    let drawn = draw(&tmp).map_err(|e| err(out, e.0));
    let result = drawn.and_then(|()| {
        let f = std::fs::File::open(&tmp).map_err(|e| err(&tmp, e.to_string()))?;
        f.sync_all().map_err(|e| err(&tmp, e.to_string()))?;
        std::fs::rename(&tmp, out).map_err(|e| err(out, e.to_string()))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn draw(
    runs: &[Curves],
    path: &Path,
    x_tokens: bool,
    key: &str,
    size: (u32, u32),
) -> Result<(), DrawError> {
    let all = runs.iter().flat_map(|r| {
        r.train
            .iter()
            .chain(r.val.iter().flat_map(|(_, v)| v.iter()))
    });
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all.filter(|(_, y)| y.is_finite()) {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        return Err(DrawError("nothing to plot".into()));
    }
    let pad = ((y1 - y0) * 0.05).max(1e-3);
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(DrawError::of)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(key, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1.max(x0 + 1.0), (y0 - pad)..(y1 + pad))
        .map_err(DrawError::of)?;
    chart
        .configure_mesh()
        .x_desc(if x_tokens { "tokens" } else { "step" })
        .y_desc(if key == "loss" {
            "loss (nats/token)"
        } else {
            key
        })
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(DrawError::of)?;
    let many = runs.len() > 1;
    let mut color = 0usize;
    for run in runs {
        let base = Palette99::pick(color).to_rgba();
        color += 1;
        let faint = base.mix(0.25);
        chart
            .draw_series(LineSeries::new(
                run.train.iter().copied(),
                faint.stroke_width(1),
            ))
            .map_err(DrawError::of)?;
        // TensorBoard's default smoothing; short runs are drawn as they are.
        let weight = if run.train.len() > 20 { 0.6 } else { 0.0 };
        let label = if many {
            format!("{} train", run.label)
        } else {
            "train".to_string()
        };
        chart
            .draw_series(LineSeries::new(
                smooth(&run.train, weight),
                base.stroke_width(2),
            ))
            .map_err(DrawError::of)?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], base.stroke_width(2))
            });
        for (name, points) in &run.val {
            let c = Palette99::pick(color).to_rgba();
            color += 1;
            let label = if many {
                format!("{} val {name}", run.label)
            } else {
                if name == "val" {
                    "val".to_string()
                } else {
                    format!("val {name}")
                }
            };
            chart
                .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(2)))
                .map_err(DrawError::of)?
                .label(label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(DrawError::of)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(DrawError::of)?;
    root.present().map_err(DrawError::of)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_a_metrics_file_and_names_bad_lines() {
        let dir = tempfile::tempdir().expect("tmp");
        let m = dir.path().join("metrics.jsonl");
        let mut text = String::new();
        for step in 1..=30 {
            let loss = 10.0 / f64::from(step).sqrt();
            text.push_str(&format!(
                "{{\"step\": {step}, \"tokens\": {}, \"loss\": {loss}",
                step * 100
            ));
            if step % 10 == 0 {
                text.push_str(&format!(
                    ", \"val_loss\": {{\"en\": {}, \"zh\": {}}}, \"val_loss_combined\": {}",
                    loss + 0.5,
                    loss + 0.7,
                    loss + 0.6
                ));
            }
            text.push_str("}\n");
        }
        std::fs::write(&m, &text).expect("write");
        let c = read_metrics(&m, false, "loss").expect("read");
        assert_eq!(c.train.len(), 30);
        let names: Vec<&str> = c.val.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["en", "zh", "combined"]);
        let out = dir.path().join("loss.png");
        plot(&[c], &out, false, "loss", (400, 300)).expect("plot");
        let png = std::fs::read(&out).expect("png");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("ls").count(),
            2,
            "no temp file left"
        );

        std::fs::write(&m, format!("{text}{{not json\n")).expect("write");
        let e = read_metrics(&m, false, "loss").expect_err("bad line");
        assert!(e.to_string().contains("metrics.jsonl: line 31"), "{e}");
    }

    #[test]
    fn smoothing_is_bias_corrected() {
        let s = smooth(&[(0.0, 4.0), (1.0, 4.0), (2.0, 4.0)], 0.9);
        assert!(s.iter().all(|&(_, y)| (y - 4.0).abs() < 1e-12), "{s:?}");
    }
}
