//! The paper's efficient frontiers over (ALMR %, log10 LR): smooth surfaces fitted to a grid of
//! CPT results, the metric frontier (for each LR, the ALMR where the averaged metric peaks) and
//! the loss frontier (for each LR, the ALMR at the floor of the validation-loss valley, the line
//! along which the loss falls fastest), each regressed to `ALMR = a * log10(LR) + b`, and their
//! intersection: the recommended (ALMR, LR).
//!
//! Surfaces: a full quadratic by least squares, or a thin-plate spline with a smoothing term;
//! the one with the smaller leave-one-out error is used, and that error is reported.

/// `ALMR (%) = slope * log10(LR) + intercept`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Line {
    pub slope: f64,
    pub intercept: f64,
}

impl Line {
    pub fn at(&self, log_lr: f64) -> f64 {
        self.slope * log_lr + self.intercept
    }
}

/// Where two lines cross: `(log10 LR, ALMR %)`, or `None` when parallel.
pub fn intersect(a: Line, b: Line) -> Option<(f64, f64)> {
    let ds = a.slope - b.slope;
    if ds.abs() < 1e-12 {
        return None;
    }
    let x = (b.intercept - a.intercept) / ds;
    Some((x, a.at(x)))
}

/// One grid result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// ALMR in percent.
    pub almr: f64,
    pub log_lr: f64,
    pub value: f64,
}

/// A fitted surface over (ALMR %, log10 LR).
pub trait Surface {
    fn value(&self, almr: f64, log_lr: f64) -> f64;
    fn name(&self) -> &'static str;
}

/// Coordinates scaled to the grid's spread, so that both axes weigh the same in a fit.
#[derive(Debug, Clone, Copy)]
struct Scale {
    a0: f64,
    sa: f64,
    x0: f64,
    sx: f64,
}

impl Scale {
    fn of(points: &[Point]) -> Self {
        let mean =
            |f: &dyn Fn(&Point) -> f64| points.iter().map(f).sum::<f64>() / points.len() as f64;
        let (a0, x0) = (mean(&|p| p.almr), mean(&|p| p.log_lr));
        let spread = |f: &dyn Fn(&Point) -> f64, m: f64| {
            (points.iter().map(|p| (f(p) - m).powi(2)).sum::<f64>() / points.len() as f64)
                .sqrt()
                .max(1e-12)
        };
        Self {
            a0,
            sa: spread(&|p| p.almr, a0),
            x0,
            sx: spread(&|p| p.log_lr, x0),
        }
    }

    fn apply(&self, almr: f64, log_lr: f64) -> (f64, f64) {
        ((almr - self.a0) / self.sa, (log_lr - self.x0) / self.sx)
    }
}

/// Solve `m x = b` (n x n, row-major) by Gaussian elimination with partial pivoting.
fn solve(mut m: Vec<f64>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let piv =
            (col..n).max_by(|&i, &j| m[i * n + col].abs().total_cmp(&m[j * n + col].abs()))?;
        if m[piv * n + col].abs() < 1e-12 {
            return None;
        }
        for k in 0..n {
            m.swap(col * n + k, piv * n + k);
        }
        b.swap(col, piv);
        for row in col + 1..n {
            let f = m[row * n + col] / m[col * n + col];
            for k in col..n {
                m[row * n + k] -= f * m[col * n + k];
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| m[row * n + k] * x[k]).sum();
        x[row] = (b[row] - s) / m[row * n + row];
    }
    Some(x)
}

/// `f = c0 + c1 a + c2 x + c3 a^2 + c4 a x + c5 x^2` in scaled coordinates.
#[derive(Debug, Clone)]
pub struct Quadratic {
    scale: Scale,
    c: [f64; 6],
}

fn quad_terms(a: f64, x: f64) -> [f64; 6] {
    [1.0, a, x, a * a, a * x, x * x]
}

impl Quadratic {
    pub fn fit(points: &[Point]) -> Option<Self> {
        Self::fit_scaled(points, Scale::of(points))
    }

    fn fit_scaled(points: &[Point], scale: Scale) -> Option<Self> {
        if points.len() < 6 {
            return None;
        }
        // Normal equations with a tiny ridge for grids that barely determine the terms.
        let mut m = vec![0.0; 36];
        let mut b = vec![0.0; 6];
        for p in points {
            let (a, x) = scale.apply(p.almr, p.log_lr);
            let t = quad_terms(a, x);
            for i in 0..6 {
                b[i] += t[i] * p.value;
                for j in 0..6 {
                    m[i * 6 + j] += t[i] * t[j];
                }
            }
        }
        for i in 1..6 {
            m[i * 6 + i] += 1e-9;
        }
        let c = solve(m, b)?;
        Some(Self {
            scale,
            c: [c[0], c[1], c[2], c[3], c[4], c[5]],
        })
    }
}

impl Surface for Quadratic {
    fn value(&self, almr: f64, log_lr: f64) -> f64 {
        let (a, x) = self.scale.apply(almr, log_lr);
        quad_terms(a, x)
            .iter()
            .zip(&self.c)
            .map(|(t, c)| t * c)
            .sum()
    }
    fn name(&self) -> &'static str {
        "quadratic"
    }
}

/// A thin-plate spline `sum w_i r_i^2 log r_i + p(a, x)` (p linear) with smoothing `lambda`.
#[derive(Debug, Clone)]
pub struct ThinPlate {
    scale: Scale,
    centers: Vec<(f64, f64)>,
    w: Vec<f64>,
    p: [f64; 3],
}

fn tps(r2: f64) -> f64 {
    if r2 <= 0.0 {
        0.0
    } else {
        0.5 * r2 * r2.ln()
    }
}

impl ThinPlate {
    pub fn fit(points: &[Point], lambda: f64) -> Option<Self> {
        Self::fit_scaled(points, Scale::of(points), lambda)
    }

    fn fit_scaled(points: &[Point], scale: Scale, lambda: f64) -> Option<Self> {
        let n = points.len();
        if n < 4 {
            return None;
        }
        let centers: Vec<(f64, f64)> = points
            .iter()
            .map(|p| scale.apply(p.almr, p.log_lr))
            .collect();
        let size = n + 3;
        let mut m = vec![0.0; size * size];
        let mut b = vec![0.0; size];
        for i in 0..n {
            for j in 0..n {
                let (dx, dy) = (centers[i].0 - centers[j].0, centers[i].1 - centers[j].1);
                m[i * size + j] = tps(dx * dx + dy * dy) + if i == j { lambda } else { 0.0 };
            }
            let poly = [1.0, centers[i].0, centers[i].1];
            for k in 0..3 {
                m[i * size + n + k] = poly[k];
                m[(n + k) * size + i] = poly[k];
            }
            b[i] = points[i].value;
        }
        let sol = solve(m, b)?;
        Some(Self {
            scale,
            w: sol[..n].to_vec(),
            p: [sol[n], sol[n + 1], sol[n + 2]],
            centers,
        })
    }
}

impl Surface for ThinPlate {
    fn value(&self, almr: f64, log_lr: f64) -> f64 {
        let (a, x) = self.scale.apply(almr, log_lr);
        let radial: f64 = self
            .centers
            .iter()
            .zip(&self.w)
            .map(|(&(ca, cx), w)| w * tps((a - ca).powi(2) + (x - cx).powi(2)))
            .sum();
        radial + self.p[0] + self.p[1] * a + self.p[2] * x
    }
    fn name(&self) -> &'static str {
        "thin-plate"
    }
}

/// Root-mean-square leave-one-out error of a fitting method on `points`.
pub fn loo_rmse<S: Surface>(points: &[Point], fit: impl Fn(&[Point]) -> Option<S>) -> f64 {
    let mut sum = 0.0;
    for i in 0..points.len() {
        let rest: Vec<Point> = points
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(_, p)| *p)
            .collect();
        match fit(&rest) {
            Some(s) => sum += (s.value(points[i].almr, points[i].log_lr) - points[i].value).powi(2),
            None => return f64::INFINITY,
        }
    }
    (sum / points.len().max(1) as f64).sqrt()
}

/// The best-predicting surface for `points` and its leave-one-out RMSE.
pub fn fit_surface(points: &[Point]) -> Option<(Box<dyn Surface>, f64)> {
    let scale = Scale::of(points);
    let mut best: Option<(Box<dyn Surface>, f64)> = None;
    let quad = loo_rmse(points, |p| Quadratic::fit_scaled(p, scale));
    if let Some(q) = Quadratic::fit_scaled(points, scale) {
        best = Some((Box::new(q), quad));
    }
    for lambda in [1e-3, 1e-2, 1e-1, 1.0] {
        let err = loo_rmse(points, |p| ThinPlate::fit_scaled(p, scale, lambda));
        if best.as_ref().is_none_or(|(_, e)| err < *e) {
            if let Some(t) = ThinPlate::fit_scaled(points, scale, lambda) {
                best = Some((Box::new(t), err));
            }
        }
    }
    best
}

/// Least-squares line `y = slope * x + intercept` and its R².
pub fn regress(xy: &[(f64, f64)]) -> Option<(Line, f64)> {
    let n = xy.len() as f64;
    if xy.len() < 2 {
        return None;
    }
    let (mx, my) = (
        xy.iter().map(|p| p.0).sum::<f64>() / n,
        xy.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxx: f64 = xy.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx < 1e-18 {
        return None;
    }
    let sxy: f64 = xy.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let ss_tot: f64 = xy.iter().map(|p| (p.1 - my).powi(2)).sum();
    let ss_res: f64 = xy
        .iter()
        .map(|p| (p.1 - slope * p.0 - intercept).powi(2))
        .sum();
    let r2 = if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else {
        1.0
    };
    Some((Line { slope, intercept }, r2))
}

/// A frontier: the optimal ALMR at each LR, the line through them and its R².
#[derive(Debug, Clone)]
pub struct Frontier {
    /// `(log10 LR, ALMR %)` of each optimum.
    pub points: Vec<(f64, f64)>,
    pub line: Line,
    pub r2: f64,
    /// Optima that fell on the edge of the search range (no interior extremum).
    pub on_edge: usize,
}

/// For each `log_lr`, the ALMR in `range` where `sign * surface` is largest (sign +1: a peak
/// of the metric; -1: the floor of the loss), found on a fine grid and refined; then the line.
pub fn frontier(
    surface: &dyn Surface,
    log_lrs: &[f64],
    range: (f64, f64),
    sign: f64,
) -> Option<Frontier> {
    let steps = 2000;
    let mut points = Vec::new();
    let mut on_edge = 0;
    for &x in log_lrs {
        let at = |i: usize| range.0 + (range.1 - range.0) * i as f64 / steps as f64;
        let best = (0..=steps).max_by(|&i, &j| {
            (sign * surface.value(at(i), x)).total_cmp(&(sign * surface.value(at(j), x)))
        })?;
        if best == 0 || best == steps {
            on_edge += 1;
        }
        points.push((x, at(best)));
    }
    let (line, r2) = regress(&points)?;
    Some(Frontier {
        points,
        line,
        r2,
        on_edge,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_papers_lines_cross_at_33_percent_and_1e_minus_9() {
        let metric = Line {
            slope: 116.67,
            intercept: 1085.00,
        };
        let loss = Line {
            slope: -0.33,
            intercept: 29.67,
        };
        let (x, almr) = intersect(metric, loss).expect("not parallel");
        assert!((x - (-9.02)).abs() < 0.005, "log10 LR {x}");
        assert!(
            (10f64.powf(x) - 9.5e-10).abs() < 0.1e-10,
            "LR {}",
            10f64.powf(x)
        );
        assert!((almr - 32.65).abs() < 0.05, "ALMR {almr}");
        assert!(intersect(loss, loss).is_none());
    }

    /// Synthetic grids with known frontier lines and noise: the fits recover them.
    #[test]
    fn recovers_known_frontiers_from_a_noisy_grid() {
        let metric_line = Line {
            slope: 8.0,
            intercept: 70.0,
        };
        let loss_line = Line {
            slope: -3.0,
            intercept: 18.0,
        };
        let almrs = [10.0, 20.0, 33.0, 50.0, 65.0];
        let lrs = [-5.0, -4.5, -4.0, -3.5, -3.0];
        let mut noise = 12345u64;
        let mut rand = || {
            noise = crate::data::splitmix64(noise);
            ((noise >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 2.0
        };
        let (mut metric, mut loss) = (Vec::new(), Vec::new());
        for &a in &almrs {
            for &x in &lrs {
                let m = 60.0 - ((a - metric_line.at(x)) / 25.0).powi(2) + 2.0 * x;
                let l = 2.5 + ((a - loss_line.at(x)) / 30.0).powi(2) - 0.1 * x;
                metric.push(Point {
                    almr: a,
                    log_lr: x,
                    value: m + 0.02 * rand(),
                });
                loss.push(Point {
                    almr: a,
                    log_lr: x,
                    value: l + 0.002 * rand(),
                });
            }
        }
        let (ms, m_err) = fit_surface(&metric).expect("fit");
        let (ls, l_err) = fit_surface(&loss).expect("fit");
        assert!(m_err < 0.2 && l_err < 0.02, "LOO {m_err} {l_err}");
        let mf = frontier(ms.as_ref(), &lrs, (0.0, 100.0), 1.0).expect("metric frontier");
        let lf = frontier(ls.as_ref(), &lrs, (0.0, 100.0), -1.0).expect("loss frontier");
        assert!(
            (mf.line.slope - 8.0).abs() < 1.0 && (mf.line.intercept - 70.0).abs() < 4.0,
            "{mf:?}"
        );
        assert!(
            (lf.line.slope + 3.0).abs() < 1.0 && (lf.line.intercept - 18.0).abs() < 4.0,
            "{lf:?}"
        );
        assert!(mf.r2 > 0.95 && lf.r2 > 0.95);
        let (x, a) = intersect(mf.line, lf.line).expect("cross");
        let (tx, ta) = intersect(metric_line, loss_line).expect("cross");
        assert!(
            (x - tx).abs() < 0.2 && (a - ta).abs() < 2.0,
            "({x}, {a}) vs ({tx}, {ta})"
        );
    }

    #[test]
    fn quadratic_reproduces_a_quadratic_exactly() {
        let f = |a: f64, x: f64| 1.0 + 0.1 * a - 2.0 * x + 0.01 * a * a + 0.3 * a * x - 0.5 * x * x;
        let pts: Vec<Point> = [10.0, 30.0, 50.0]
            .iter()
            .flat_map(|&a| {
                [-5.0, -4.0, -3.0].map(move |x| Point {
                    almr: a,
                    log_lr: x,
                    value: f(a, x),
                })
            })
            .collect();
        let q = Quadratic::fit(&pts).expect("fit");
        assert!((q.value(40.0, -3.5) - f(40.0, -3.5)).abs() < 1e-6);
        assert!(loo_rmse(&pts, Quadratic::fit) < 1e-5);
    }
}
