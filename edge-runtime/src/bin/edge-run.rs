//! `edge-run`: generate with a GGUF model, benchmark it like llama-bench, or measure perplexity
//! like llama-perplexity.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use edge_runtime::kernels::speed;
use edge_runtime::{
    GenerateOptions, LoadOptions, Message, Model, SamplerConfig, Session, SessionOptions,
};

#[derive(Parser)]
#[command(
    name = "edge-run",
    version,
    about = "CPU inference for Llama GGUF models",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Prompt-processing and generation speed, like llama-bench (pp/tg tokens per second).
    Bench(BenchArgs),
    /// Perplexity of a text file, computed like llama-perplexity.
    Perplexity(PplArgs),
}

#[derive(Args)]
struct Common {
    /// The GGUF model.
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// Threads (default: all cores).
    #[arg(short, long)]
    threads: Option<usize>,
    /// Multiply from the file's layout: no repacked weight copies (faster load, less memory,
    /// slower decode on AVX-512 CPUs).
    #[arg(long)]
    keep_file_layout: bool,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: Common,
    /// The user message (chat-formatted with the model's template) or, with --raw, the text.
    #[arg(short, long)]
    prompt: Option<String>,
    /// A system message for chat formatting.
    #[arg(long)]
    system: Option<String>,
    /// Use the prompt as plain text, without the chat template.
    #[arg(long)]
    raw: bool,
    /// Tokens to generate at most.
    #[arg(short = 'n', long, default_value_t = 256)]
    n_predict: usize,
    /// Context size.
    #[arg(short = 'c', long, default_value_t = 2048)]
    ctx_size: usize,
    #[arg(long, default_value_t = 0.8)]
    temp: f32,
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    #[arg(long, default_value_t = 0x5eed)]
    seed: u64,
    /// Stop before this string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
}

#[derive(Args)]
struct BenchArgs {
    #[command(flatten)]
    common: Common,
    /// Prompt tokens for the pp test (0 to skip).
    #[arg(short = 'p', long, default_value_t = 512)]
    n_prompt: usize,
    /// Generated tokens for the tg test (0 to skip).
    #[arg(short = 'n', long, default_value_t = 128)]
    n_gen: usize,
    /// Repetitions of each test.
    #[arg(short = 'r', long, default_value_t = 3)]
    reps: usize,
    /// Prompt batch size.
    #[arg(short = 'b', long, default_value_t = 128)]
    batch: usize,
    /// Also time each weight type's decode matmul against the read bandwidth.
    #[arg(long)]
    kernels: bool,
}

#[derive(Args)]
struct PplArgs {
    #[command(flatten)]
    common: Common,
    /// The text file.
    #[arg(short, long)]
    file: PathBuf,
    /// Chunk (context) size.
    #[arg(short = 'c', long, default_value_t = 512)]
    ctx_size: usize,
    /// Prompt batch size.
    #[arg(short = 'b', long, default_value_t = 128)]
    batch: usize,
    /// Also time each weight type's decode matmul against the read bandwidth.
    #[arg(long)]
    kernels: bool,
}

fn default_model() -> PathBuf {
    PathBuf::from("assets/SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn load(c: &Common) -> Result<(Arc<Model>, usize)> {
    let path = c.model.clone().unwrap_or_else(default_model);
    let t = Instant::now();
    let options = LoadOptions {
        keep_file_layout: c.keep_file_layout,
        ..LoadOptions::default()
    };
    let model =
        Model::load(&path, options).with_context(|| format!("loading {}", path.display()))?;
    eprintln!(
        "loaded {} ({}, {:.1} MiB, {:.1} MiB repacked) in {:.2} s",
        model.name(),
        path.display(),
        model.file_size() as f64 / 1048576.0,
        model.packed_bytes() as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    let threads = c
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    Ok((Arc::new(model), threads))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Bench(a)) => bench(a),
        Some(Command::Perplexity(a)) => perplexity(a),
        None => run(cli.run),
    }
}

fn run(a: RunArgs) -> Result<()> {
    let Some(prompt) = a.prompt.clone() else {
        bail!("--prompt is required (see --help)");
    };
    let (model, threads) = load(&a.common)?;
    let mut session = Session::new(
        model.clone(),
        SessionOptions {
            n_ctx: a.ctx_size,
            n_threads: threads,
            ..Default::default()
        },
    )?;
    let opts = GenerateOptions {
        max_tokens: a.n_predict,
        sampler: SamplerConfig {
            temperature: a.temp,
            top_k: a.top_k,
            top_p: a.top_p,
            min_p: a.min_p,
            repeat_penalty: a.repeat_penalty,
            seed: a.seed,
            ..SamplerConfig::default()
        },
        stop: a.stop.clone(),
        ..Default::default()
    };
    let mut gen = if a.raw {
        session.complete(&prompt, opts)?
    } else {
        let mut msgs = Vec::new();
        if let Some(s) = &a.system {
            msgs.push(Message::system(s.clone()));
        }
        msgs.push(Message::user(prompt));
        session.chat(&msgs, opts)?
    };
    let mut out = std::io::stdout().lock();
    for piece in gen.by_ref() {
        out.write_all(piece?.text.as_bytes())?;
        out.flush()?;
    }
    writeln!(out)?;
    let s = gen.stats();
    eprintln!(
        "prompt: {} tokens ({} reused) at {:.1} t/s | generation: {} tokens at {:.1} t/s | stop: {:?}",
        s.prompt_tokens,
        s.reused_tokens,
        s.prompt_tokens_per_second(),
        s.generated_tokens,
        s.tokens_per_second(),
        gen.finish_reason()
    );
    Ok(())
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let m = v.iter().sum::<f64>() / v.len().max(1) as f64;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len().max(2) - 1) as f64;
    (m, var.sqrt())
}

/// Read bandwidth of this machine with `threads` threads: each sums its share of a 512 MiB
/// buffer, well above the caches, in the huge pages the weights get (best of 5).
fn bench(a: BenchArgs) -> Result<()> {
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
            session_isa_name()
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
    let bw = speed::read_bandwidth(threads);
    let per_token = model.bytes_per_token() as f64;
    println!(
        "\nweights read per token: {:.1} MiB; measured read bandwidth {:.1} GB/s -> decode bound {:.0} t/s{}",
        per_token / 1048576.0,
        bw / 1e9,
        bw / per_token,
        if tg > 0.0 { format!(" (tg reaches {:.0} % of it)", 100.0 * tg / (bw / per_token)) } else { String::new() }
    );
    if a.kernels {
        kernel_table(&model, threads, bw);
    }
    Ok(())
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

fn session_isa_name() -> &'static str {
    edge_runtime::kernels::Isa::detect().name()
}

fn perplexity(a: PplArgs) -> Result<()> {
    let (model, threads) = load(&a.common)?;
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let tokens = model.tokenize(&text, true)?;
    eprintln!(
        "{} tokens, {} chunks of {}",
        tokens.len(),
        tokens.len() / a.ctx_size.max(1),
        a.ctx_size
    );
    let mut session = Session::new(
        model.clone(),
        SessionOptions {
            n_ctx: a.ctx_size,
            n_threads: threads,
            n_batch: a.batch,
        },
    )?;
    let t = Instant::now();
    let r = edge_runtime::perplexity(&mut session, &tokens, |c, ppl| {
        print!("[{}]{ppl:.4},", c + 1);
        let _ = std::io::stdout().flush();
    })
    .with_context(|| format!("perplexity of {}", a.file.display()))?;
    println!("\nFinal estimate: PPL = {:.4} +/- {:.5}", r.ppl, r.stderr);
    eprintln!(
        "{} tokens scored in {:.1} s ({:.1} t/s evaluated)",
        r.scored_tokens,
        t.elapsed().as_secs_f64(),
        (r.chunks * a.ctx_size) as f64 / t.elapsed().as_secs_f64()
    );
    Ok(())
}
