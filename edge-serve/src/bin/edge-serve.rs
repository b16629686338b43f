//! `edge-serve`: the command line over [`edge_serve::Server`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Parser;

use edge_runtime::persona;
use edge_runtime::{LoadOptions, Model};
use edge_serve::{Server, ServerConfig};

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Serve a Llama GGUF model over the OpenAI API (chat and text completions, streaming), decoding concurrent requests together"
)]
struct Args {
    /// The GGUF model.
    #[arg(short = 'm', long)]
    model: PathBuf,
    /// Address to listen on (localhost only by default).
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Requests decoded together (slots); each has its own KV cache of --ctx-size tokens.
    #[arg(short = 'n', long = "parallel", default_value_t = 4)]
    parallel: usize,
    /// Context of each slot in tokens (prompt and reply). Unlike llama-server's -c, not
    /// divided among the slots.
    #[arg(short = 'c', long = "ctx-size", default_value_t = 4096)]
    ctx_size: usize,
    /// Threads for inference.
    #[arg(short = 't', long, default_value_t = std::thread::available_parallelism().map_or(1, |n| n.get()))]
    threads: usize,
    /// Tokens evaluated per step, all slots together (prompt chunks fill what decoding leaves).
    #[arg(short = 'b', long = "batch-size", default_value_t = 256)]
    batch_size: usize,
    /// Requests that may wait for a slot; beyond that, 503 with Retry-After.
    #[arg(long, default_value_t = 64)]
    queue: usize,
    /// Persona (listener, xiaonuan, coach, or one from --personas): its system prompt is used
    /// when a request has none, its sampling settings when a request sets none.
    #[arg(long)]
    persona: Option<String>,
    /// A folder of persona TOML files (added to the built-in ones).
    #[arg(long, default_value = "configs/personas")]
    personas: PathBuf,
    /// Require `Authorization: Bearer KEY` (also read from $EDGE_SERVE_API_KEY).
    #[arg(long, env = "EDGE_SERVE_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Largest request body, in bytes (larger ones get 413).
    #[arg(long, default_value_t = 4 << 20)]
    max_body: usize,
    /// The model id reported by /v1/models (default: the file name without .gguf).
    #[arg(long)]
    alias: Option<String>,
}

fn main() -> Result<()> {
    let a = Args::parse();
    if !a.model.is_file() {
        bail!("{}: no such model file", a.model.display());
    }
    let persona = match &a.persona {
        None => None,
        Some(name) => {
            let all = persona::load_all(Some(&a.personas))?;
            let names: Vec<String> = all.iter().map(|p| p.name.clone()).collect();
            Some(
                all.into_iter()
                    .find(|p| &p.name == name)
                    .with_context(|| format!("no persona {name:?} (have: {})", names.join(", ")))?,
            )
        }
    };
    let model = Arc::new(
        Model::load(&a.model, LoadOptions::default())
            .with_context(|| format!("loading {}", a.model.display()))?,
    );
    let config = ServerConfig {
        addr: SocketAddr::new(a.host, a.port),
        parallel: a.parallel,
        n_ctx: a.ctx_size,
        n_threads: a.threads,
        n_batch: a.batch_size,
        queue: a.queue,
        persona,
        api_key: a.api_key,
        max_body_bytes: a.max_body,
        model_id: a.alias,
        stop_on_ctrl_c: true,
    };
    let (parallel, n_ctx, threads) = (config.parallel, config.n_ctx, config.n_threads);
    let server = Server::start(model.clone(), config)?;
    eprintln!(
        "edge-serve: {} on http://{} ({parallel} slots x {n_ctx} tokens, {threads} threads); Ctrl-C stops",
        model.name(),
        server.addr()
    );
    server.wait()?;
    eprintln!("edge-serve: stopped");
    Ok(())
}
