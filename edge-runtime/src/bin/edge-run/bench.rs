//! `edge-run bench`: prompt-processing and generation speed like llama-bench, the decode
//! bound from the measured read bandwidth, and with `--kernels` each weight type's matmul speed.

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use edge_runtime::kernels::speed;
use edge_runtime::{Model, Session, SessionOptions};

use crate::{isa_name, load, Common};

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub common: Common,
    /// Prompt tokens for the pp test (0 to skip).
    #[arg(short = 'p', long, default_value_t = 512)]
    pub n_prompt: usize,
    /// Generated tokens for the tg test (0 to skip).
    #[arg(short = 'n', long, default_value_t = 128)]
    pub n_gen: usize,
    /// Repetitions of each test.
    #[arg(short = 'r', long, default_value_t = 3)]
    pub reps: usize,
    /// Prompt batch size.
    #[arg(short = 'b', long, default_value_t = 128)]
    pub batch: usize,
    /// Also time each weight type's decode matmul against the read bandwidth.
    #[arg(long)]
    pub kernels: bool,
    /// Windows of 8 generated tokens, each between two read-bandwidth probes, for the decode's
    /// share of the bound measured next to it (0 to skip).
    #[arg(long, default_value_t = 24)]
    pub bound_windows: usize,
}

pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len().max(1) as f64;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len().max(2) - 1) as f64;
    (m, var.sqrt())
}

/// pp and tg like llama-bench, then the decode bound: once from the read bandwidth measured
/// after the tests, and per window of tokens from the bandwidth measured around it.
pub fn bench(a: BenchArgs) -> Result<()> {
    let (model, threads) = load(&a.common)?;
    let vocab = model.config.vocab_size;
    let n_ctx = (a.n_prompt + a.n_gen).max(16);
    let mut session = Session::new(
        model.clone(),
        SessionOptions {
            n_ctx,
            n_threads: threads,
            n_batch: a.batch,
        },
    )?;
    // Deterministic pseudo-random tokens, as llama-bench uses random tokens.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % u64::from(vocab)) as u32
    };
    println!(
        "| model | size | params | isa | threads | test | t/s |\n| --- | ---: | ---: | --- | ---: | --- | ---: |"
    );
    let size = format!("{:.2} MiB", model.file_size() as f64 / 1048576.0);
    let params = format!("{:.2} M", model.param_count() as f64 / 1e6);
    let row = |test: String, v: &[f64]| {
        let (m, s) = mean_std(v);
        println!(
            "| {} | {size} | {params} | {} | {threads} | {test} | {m:.2} ± {s:.2} |",
            model.name(),
            isa_name()
        );
        m
    };
    // Warm-up: page in the weights.
    session.eval(&[next()])?;
    let mut tg = 0.0;
    if a.n_prompt > 0 {
        let mut v = Vec::new();
        for _ in 0..a.reps {
            let toks: Vec<u32> = (0..a.n_prompt).map(|_| next()).collect();
            session.reset();
            let t = Instant::now();
            session.eval(&toks)?;
            v.push(a.n_prompt as f64 / t.elapsed().as_secs_f64());
        }
        row(format!("pp{}", a.n_prompt), &v);
    }
    if a.n_gen > 0 {
        let mut v = Vec::new();
        for _ in 0..a.reps {
            session.reset();
            let t = Instant::now();
            for _ in 0..a.n_gen {
                session.eval(&[next()])?;
            }
            v.push(a.n_gen as f64 / t.elapsed().as_secs_f64());
        }
        tg = row(format!("tg{}", a.n_gen), &v);
    }
    // One probe buffer for the bound and for the windows below.
    let probe = speed::ReadProbe::new(512 << 20);
    let bw = probe.best(threads, 5);
    let per_token = model.bytes_per_token() as f64;
    println!(
        "\nweights read per token: {:.1} MiB; measured read bandwidth {:.1} GB/s -> decode bound {:.0} t/s{}",
        per_token / 1048576.0,
        bw / 1e9,
        bw / per_token,
        if tg > 0.0 { format!(" (tg reaches {:.0} % of it)", 100.0 * tg / (bw / per_token)) } else { String::new() }
    );
    if a.n_gen > 0 && a.bound_windows > 0 {
        let w = bound_windows(
            &mut session,
            &mut next,
            &probe,
            a.bound_windows,
            threads,
            per_token,
        )?;
        if w.is_empty() {
            println!("decode against the bandwidth measured next to it: no window had a steady bandwidth");
        } else {
            let shares = |v: &[(f64, f64)]| {
                let mut s: Vec<f64> = v.iter().map(|&(_, s)| 100.0 * s).collect();
                s.sort_by(f64::total_cmp);
                s
            };
            let all = shares(&w);
            // Windows sorted by bandwidth: the upper half met the higher bound.
            let upper = shares(&w[w.len() / 2..]);
            println!(
                "decode against the bandwidth measured next to it: {} of {} windows of {WINDOW} tokens \
                 with a steady bandwidth ({:.1}-{:.1} GB/s): median {:.0} % of the bound (range {:.0}-{:.0} %); \
                 the half at the higher bandwidths (from {:.1} GB/s): median {:.0} %",
                w.len(),
                a.bound_windows,
                w[0].0 / 1e9,
                w[w.len() - 1].0 / 1e9,
                median(&all),
                all[0],
                all[all.len() - 1],
                w[w.len() / 2].0 / 1e9,
                median(&upper),
            );
        }
    }
    if a.kernels {
        kernel_table(&model, threads, bw);
    }
    Ok(())
}

/// Tokens per bound window.
const WINDOW: usize = 8;

/// Decodes `n` windows of [`WINDOW`] tokens, each between two `probe` measures (tens of ms).
/// Where the machine's
/// bandwidth changes while a test runs (a two-valued 50 / 80 GB/s on 2 threads of one cloud
/// host, flipping every few seconds), a bound taken at another moment misstates the share; a
/// window whose probes disagree by more than 10 % is left out. Returns (bandwidth, share of
/// the bound) per kept window, by bandwidth.
fn bound_windows(
    session: &mut Session,
    next: &mut impl FnMut() -> u32,
    probe: &speed::ReadProbe,
    n: usize,
    threads: usize,
    per_token: f64,
) -> Result<Vec<(f64, f64)>> {
    let mut w = Vec::new();
    session.reset();
    let mut before = probe.measure(threads);
    for _ in 0..n {
        if session.tokens().len() + WINDOW > session.n_ctx() {
            session.reset();
        }
        let t = Instant::now();
        for _ in 0..WINDOW {
            session.eval(&[next()])?;
        }
        let secs = t.elapsed().as_secs_f64();
        let after = probe.measure(threads);
        if (before - after).abs() <= 0.1 * before.max(after) {
            let bw = (before + after) / 2.0;
            w.push((bw, WINDOW as f64 * per_token / secs / bw));
        }
        before = after;
    }
    w.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(w)
}

fn median(sorted: &[f64]) -> f64 {
    let k = sorted.len();
    if k % 2 == 1 {
        sorted[k / 2]
    } else {
        (sorted[k / 2 - 1] + sorted[k / 2]) / 2.0
    }
}

/// Per weight type of the model: the decode matmul's speed in weight bytes/s on one of the
/// model's widths for that type, from memory (a 256 MiB matrix) and from cache (L2-sized),
/// against the read bandwidth, and the time per token that type's bytes take at that speed;
/// and the prefill matmul's speed (64 tokens, 64 MiB matrix) in weight bytes x tokens per
/// second.
fn kernel_table(model: &Model, threads: usize, bw: f64) {
    let t = Duration::from_millis(700);
    println!(
        "\n| type | MiB/token | decode GB/s (256 MiB matrix) | % of bandwidth | decode GB/s (L2-sized) | ms/token | prefill GB/s x tokens |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut ms = 0.0;
    for b in model.matmul_bytes() {
        let (ty, cols) = (b.ty, b.cols);
        let row_bytes = (cols as u64 / ty.block_size() * ty.type_size()) as usize;
        let shape = |bytes: usize, n: usize| speed::MatmulShape {
            ty,
            rows: (bytes / row_bytes).next_multiple_of(16),
            cols,
            n,
            packed: true,
        };
        let mem = speed::matmul_bytes_per_s(shape(256 << 20, 1), threads, t);
        let l2 = speed::matmul_bytes_per_s(shape(256 << 10, 1), threads, t);
        let pp = 64.0 * speed::matmul_bytes_per_s(shape(64 << 20, 64), threads, t);
        let type_ms = 1e3 * b.bytes as f64 / mem;
        ms += type_ms;
        println!(
            "| {ty} | {:.1} | {:.1} | {:.0} | {:.1} | {type_ms:.2} | {:.0} |",
            b.bytes as f64 / 1048576.0,
            mem / 1e9,
            100.0 * mem / bw,
            l2 / 1e9,
            pp / 1e9
        );
    }
    println!(
        "matmuls alone at these speeds: {ms:.2} ms/token = {:.0} t/s",
        1e3 / ms
    );
}
