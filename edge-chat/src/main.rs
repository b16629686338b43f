//! `edge-chat`: chat with a GGUF model in the terminal (or `--once` for scripts).

use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;
use crossterm::event::{
    self, DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
    Event as CEvent, KeyboardEnhancementFlags, MouseEventKind, PopKeyboardEnhancementFlags,
    PushKeyboardEnhancementFlags,
};
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, supports_keyboard_enhancement, EnterAlternateScreen,
    LeaveAlternateScreen,
};
use edge_chat::app::{App, Command, Event};
use edge_chat::persona::{self, Persona};
use edge_chat::store::Store;
use edge_chat::{ui, worker};
use edge_runtime::{GenerateOptions, LoadOptions, Message, Model, Session, SessionOptions};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Chat with a Llama GGUF model in the terminal (edge-runtime)"
)]
struct Args {
    /// The GGUF model (default: the model scripts/fetch-assets.sh puts in assets/).
    #[arg(long, default_value = "assets/SmolLM2-135M-Instruct.Q4_1.gguf")]
    model: PathBuf,
    /// Persona: listener, xiaonuan, coach, or one from --personas.
    #[arg(long, default_value = "listener")]
    persona: String,
    /// A folder of persona TOML files (added to the built-in ones).
    #[arg(long, default_value = "configs/personas")]
    personas: PathBuf,
    /// Override the persona's system prompt.
    #[arg(long)]
    system: Option<String>,
    /// Print the reply to PROMPT on stdout and exit (no terminal UI).
    #[arg(long)]
    once: Option<String>,
    /// Threads for inference.
    #[arg(short = 't', long, default_value_t = std::thread::available_parallelism().map_or(1, |n| n.get()))]
    threads: usize,
    /// Context size in tokens.
    #[arg(short = 'c', long, default_value_t = 4096)]
    ctx: usize,
    /// Sampler seed (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Where saved sessions go (default: $EDGE_CHAT_DATA_DIR or the platform data dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn main() -> Result<()> {
    let a = Args::parse();
    if !a.model.is_file() {
        bail!(
            "{}: no such model file (run scripts/fetch-assets.sh, or pass --model F.gguf)",
            a.model.display()
        );
    }
    let personas = persona::load_all(Some(&a.personas))?;
    let mut p: Persona = personas
        .iter()
        .find(|p| p.name == a.persona)
        .cloned()
        .with_context(|| {
            let names: Vec<&str> = personas.iter().map(|p| p.name.as_str()).collect();
            format!("no persona {:?} (have: {})", a.persona, names.join(", "))
        })?;
    if let Some(s) = &a.system {
        p.system.clone_from(s);
    }
    let model = Arc::new(
        Model::load(&a.model, LoadOptions::default())
            .with_context(|| format!("loading {}", a.model.display()))?,
    );
    let opts = SessionOptions {
        n_ctx: a.ctx,
        n_threads: a.threads,
        ..SessionOptions::default()
    };
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    if let Some(prompt) = &a.once {
        return once(model, opts, &p, prompt, seed);
    }
    let store = Store::new(a.data_dir.clone().unwrap_or_else(Store::default_dir));
    let name = a.model.file_name().map_or_else(
        || model.name().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let n_ctx = opts
        .n_ctx
        .min(model.config.max_position_embeddings as usize);
    let mut app = App::new(name, n_ctx, personas, p, store);
    interactive(&mut app, model, opts, seed)
}

fn once(
    model: Arc<Model>,
    opts: SessionOptions,
    p: &Persona,
    prompt: &str,
    seed: u64,
) -> Result<()> {
    let mut s = Session::new(model, opts)?;
    let mut msgs = Vec::new();
    if !p.system.trim().is_empty() {
        msgs.push(Message::system(p.system.clone()));
    }
    msgs.push(Message::user(prompt));
    let g = GenerateOptions {
        max_tokens: p.sampling.max_tokens,
        sampler: worker::sampler(&p.sampling, seed),
        ..GenerateOptions::default()
    };
    let mut out = std::io::stdout().lock();
    for piece in s.chat(&msgs, g)? {
        out.write_all(piece?.text.as_bytes())?;
        out.flush()?;
    }
    writeln!(out)?;
    Ok(())
}

/// Puts the terminal back (raw mode off, main screen, no mouse/paste capture) on drop, so
/// it is restored on every exit path; the panic hook does the same before printing.
struct TerminalGuard {
    enhanced: bool,
}

fn restore(enhanced: bool) {
    let mut out = std::io::stdout();
    if enhanced {
        let _ = crossterm::execute!(out, PopKeyboardEnhancementFlags);
    }
    let _ = crossterm::execute!(
        out,
        DisableBracketedPaste,
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = disable_raw_mode();
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore(self.enhanced);
    }
}

fn input_thread(tx: Sender<Event>) {
    std::thread::spawn(move || loop {
        let ev = match event::poll(Duration::from_millis(100)) {
            Ok(true) => match event::read() {
                Ok(CEvent::Key(k)) => Event::Key(k),
                Ok(CEvent::Paste(s)) => Event::Paste(s),
                Ok(CEvent::Resize(w, h)) => Event::Resize(w, h),
                Ok(CEvent::Mouse(m)) => match m.kind {
                    MouseEventKind::ScrollUp => Event::ScrollUp,
                    MouseEventKind::ScrollDown => Event::ScrollDown,
                    _ => continue,
                },
                Ok(_) => continue,
                Err(_) => return,
            },
            Ok(false) => Event::Tick,
            Err(_) => return,
        };
        if tx.send(ev).is_err() {
            return;
        }
    });
}

fn interactive(app: &mut App, model: Arc<Model>, opts: SessionOptions, seed: u64) -> Result<()> {
    enable_raw_mode().context("this needs an interactive terminal (use --once in scripts)")?;
    let enhanced = supports_keyboard_enhancement().unwrap_or(false);
    let _guard = TerminalGuard { enhanced };
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore(enhanced);
        hook(info);
    }));
    let mut out = std::io::stdout();
    crossterm::execute!(
        out,
        EnterAlternateScreen,
        EnableBracketedPaste,
        EnableMouseCapture
    )?;
    if enhanced {
        // Lets Shift+Enter arrive as such (kitty protocol terminals).
        crossterm::execute!(
            out,
            PushKeyboardEnhancementFlags(KeyboardEnhancementFlags::DISAMBIGUATE_ESCAPE_CODES)
        )?;
    }
    let mut terminal = Terminal::new(CrosstermBackend::new(out))?;
    let size = terminal.size()?;
    app.size = (size.width, size.height);
    let (tx, rx) = mpsc::channel::<Event>();
    let w = worker::spawn(model, opts, seed, tx.clone())?;
    input_thread(tx);
    loop {
        terminal.draw(|f| ui::draw(f, app))?;
        let Ok(first) = rx.recv() else { break };
        // Apply everything already queued before drawing again (fast token streams).
        for ev in std::iter::once(first).chain(rx.try_iter()) {
            for c in app.handle(ev) {
                match c {
                    Command::Cancel => w.cancel.cancel(),
                    other => {
                        let _ = w.commands.send(other);
                    }
                }
            }
        }
        if app.quit {
            break;
        }
    }
    w.cancel.cancel();
    Ok(())
}
