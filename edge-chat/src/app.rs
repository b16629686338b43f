//! The app's state and its one update function: every input (a key, a paste, a resize, the
//! mouse wheel, a message from the inference thread) goes through [`App::handle`], which
//! changes the state and returns commands for the inference thread. No I/O here except the
//! session store, so tests drive it directly.

use std::time::Instant;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use edge_runtime::{FinishReason, Message};

use crate::editor::Editor;
use crate::persona::{Persona, Sampling};
use crate::store::{SavedSession, Store, Turn};

/// Everything the event loop feeds the app (ratatui's async examples: one enum, one channel).
#[derive(Debug, Clone)]
pub enum Event {
    Key(KeyEvent),
    Paste(String),
    Resize(u16, u16),
    ScrollUp,
    ScrollDown,
    Worker(WorkerEvent),
    Tick,
}

/// What the inference thread reports.
#[derive(Debug, Clone)]
pub enum WorkerEvent {
    /// A streamed piece of the reply.
    Piece(String),
    /// The reply ended: tokens/s, context used, and why.
    Done {
        tokens: usize,
        tokens_per_s: f64,
        ctx_used: usize,
        /// `None` when the generation ended without saying why (an error path).
        reason: Option<FinishReason>,
    },
    Error(String),
}

/// What the app asks of the inference thread.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Generate {
        messages: Vec<Message>,
        sampling: Sampling,
    },
    /// Stop the running generation (keep what was generated).
    Cancel,
    /// Forget the KV cache.
    Reset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
    /// Notices from the app (help, errors); never sent to the model.
    Info,
}

#[derive(Debug, Clone)]
pub struct Line {
    pub role: Role,
    pub text: String,
    pub interrupted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum State {
    Ready,
    Generating { since: Instant, pieces: usize },
}

pub struct App {
    pub model_name: String,
    pub n_ctx: usize,
    pub ctx_used: usize,
    pub tokens_per_s: Option<f64>,
    pub personas: Vec<Persona>,
    pub persona: Persona,
    pub system: String,
    pub sampling: Sampling,
    pub lines: Vec<Line>,
    pub editor: Editor,
    /// Rows scrolled up from the bottom of the conversation (0: follow the reply).
    pub scroll: usize,
    pub state: State,
    pub quit: bool,
    pub size: (u16, u16),
    pub store: Store,
}

pub const HELP: &str = "Enter send · Alt+Enter / Shift+Enter / Ctrl+J newline · Esc stop the reply · Ctrl+C quit · PgUp/PgDn or wheel scroll · Up/Down history\n\
/clear  new conversation\n\
/system TEXT  set the system prompt\n\
/persona [NAME]  list or switch personas\n\
/set temp|top_p|top_k|min_p|repeat_penalty|max_tokens VALUE\n\
/save NAME · /load NAME · /sessions\n\
/help · /quit";

impl App {
    pub fn new(
        model_name: String,
        n_ctx: usize,
        personas: Vec<Persona>,
        persona: Persona,
        store: Store,
    ) -> Self {
        Self {
            model_name,
            n_ctx,
            ctx_used: 0,
            tokens_per_s: None,
            system: persona.system.clone(),
            sampling: persona.sampling.clone(),
            personas,
            persona,
            lines: Vec::new(),
            editor: Editor::default(),
            scroll: 0,
            state: State::Ready,
            quit: false,
            size: (80, 24),
            store,
        }
    }

    pub fn generating(&self) -> bool {
        matches!(self.state, State::Generating { .. })
    }

    fn info(&mut self, text: impl Into<String>) {
        self.lines.push(Line {
            role: Role::Info,
            text: text.into(),
            interrupted: false,
        });
        self.scroll = 0;
    }

    /// The conversation as the model sees it: system prompt, then user/assistant turns.
    pub fn messages(&self) -> Vec<Message> {
        let mut m = Vec::new();
        if !self.system.trim().is_empty() {
            m.push(Message::system(self.system.clone()));
        }
        for l in &self.lines {
            match l.role {
                Role::User => m.push(Message::user(l.text.clone())),
                Role::Assistant => m.push(Message::assistant(l.text.clone())),
                Role::Info => {}
            }
        }
        m
    }

    pub fn handle(&mut self, ev: Event) -> Vec<Command> {
        match ev {
            Event::Key(k) if k.kind != KeyEventKind::Release => self.key(k),
            Event::Key(_) | Event::Tick => Vec::new(),
            Event::Paste(s) => {
                self.editor.insert_str(&s);
                Vec::new()
            }
            Event::Resize(w, h) => {
                self.size = (w, h);
                Vec::new()
            }
            Event::ScrollUp => {
                self.scroll = self.scroll.saturating_add(3);
                Vec::new()
            }
            Event::ScrollDown => {
                self.scroll = self.scroll.saturating_sub(3);
                Vec::new()
            }
            Event::Worker(w) => {
                self.worker(w);
                Vec::new()
            }
        }
    }

    fn worker(&mut self, w: WorkerEvent) {
        match w {
            WorkerEvent::Piece(p) => {
                if let State::Generating { pieces, .. } = &mut self.state {
                    *pieces += 1;
                }
                if let Some(l) = self.lines.last_mut().filter(|l| l.role == Role::Assistant) {
                    l.text.push_str(&p);
                }
            }
            WorkerEvent::Done {
                tokens: _,
                tokens_per_s,
                ctx_used,
                reason,
            } => {
                self.state = State::Ready;
                self.tokens_per_s = Some(tokens_per_s);
                self.ctx_used = ctx_used;
                if reason == Some(FinishReason::Cancelled) {
                    if let Some(l) = self.lines.last_mut().filter(|l| l.role == Role::Assistant) {
                        l.interrupted = true;
                    }
                } else if reason == Some(FinishReason::ContextFull) {
                    self.info("The context is full: /clear starts a new conversation (or /save it first).");
                }
            }
            WorkerEvent::Error(e) => {
                self.state = State::Ready;
                // A reply that never started is dropped with its question kept in the history.
                if self
                    .lines
                    .last()
                    .is_some_and(|l| l.role == Role::Assistant && l.text.is_empty())
                {
                    self.lines.pop();
                }
                self.info(format!("error: {e}"));
            }
        }
    }

    fn key(&mut self, k: KeyEvent) -> Vec<Command> {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        let alt = k.modifiers.contains(KeyModifiers::ALT);
        let shift = k.modifiers.contains(KeyModifiers::SHIFT);
        match k.code {
            KeyCode::Char('c') if ctrl => {
                self.quit = true;
                return if self.generating() {
                    vec![Command::Cancel]
                } else {
                    Vec::new()
                };
            }
            KeyCode::Char('d') if ctrl && self.editor.is_empty() => {
                self.quit = true;
                return if self.generating() {
                    vec![Command::Cancel]
                } else {
                    Vec::new()
                };
            }
            KeyCode::Esc => {
                if self.generating() {
                    return vec![Command::Cancel];
                }
                self.editor.clear();
            }
            KeyCode::Enter if alt || shift => self.editor.newline(),
            KeyCode::Char('j') if ctrl => self.editor.newline(),
            KeyCode::Enter => return self.submit(),
            KeyCode::Char('u') if ctrl => self.editor.kill_to_start(),
            KeyCode::Char('l') if ctrl => self.scroll = 0,
            KeyCode::Char(c) if !ctrl => self.editor.insert_char(c),
            KeyCode::Backspace => self.editor.backspace(),
            KeyCode::Delete => self.editor.delete(),
            KeyCode::Left => self.editor.left(),
            KeyCode::Right => self.editor.right(),
            KeyCode::Home => self.editor.home(),
            KeyCode::End => self.editor.end(),
            KeyCode::Up => {
                self.editor.up();
            }
            KeyCode::Down => {
                self.editor.down();
            }
            KeyCode::PageUp => self.scroll = self.scroll.saturating_add(self.page()),
            KeyCode::PageDown => self.scroll = self.scroll.saturating_sub(self.page()),
            KeyCode::Tab => self.editor.insert_str("    "),
            _ => {}
        }
        Vec::new()
    }

    fn page(&self) -> usize {
        usize::from(self.size.1).saturating_sub(6).max(1)
    }

    fn submit(&mut self) -> Vec<Command> {
        if self.generating() {
            return Vec::new(); // one reply at a time; Esc stops it
        }
        let text = self.editor.take();
        let t = text.trim();
        if t.is_empty() {
            return Vec::new();
        }
        if let Some(cmd) = t.strip_prefix('/') {
            return self.slash(cmd);
        }
        self.lines.push(Line {
            role: Role::User,
            text: t.to_string(),
            interrupted: false,
        });
        self.lines.push(Line {
            role: Role::Assistant,
            text: String::new(),
            interrupted: false,
        });
        self.scroll = 0;
        self.state = State::Generating {
            since: Instant::now(),
            pieces: 0,
        };
        let mut messages = self.messages();
        messages.pop(); // the empty assistant line being generated
        vec![Command::Generate {
            messages,
            sampling: self.sampling.clone(),
        }]
    }

    fn snapshot(&self) -> SavedSession {
        SavedSession {
            persona: self.persona.name.clone(),
            system: self.system.clone(),
            sampling: self.sampling.clone(),
            turns: self
                .lines
                .iter()
                .filter(|l| l.role != Role::Info)
                .map(|l| Turn {
                    role: if l.role == Role::User {
                        "user"
                    } else {
                        "assistant"
                    }
                    .into(),
                    content: l.text.clone(),
                    interrupted: l.interrupted,
                })
                .collect(),
            model: self.model_name.clone(),
        }
    }

    fn slash(&mut self, cmd: &str) -> Vec<Command> {
        let (name, arg) = cmd.split_once(char::is_whitespace).unwrap_or((cmd, ""));
        let arg = arg.trim();
        match name {
            "clear" => {
                self.lines.clear();
                self.ctx_used = 0;
                self.info("New conversation.");
                return vec![Command::Reset];
            }
            "system" => {
                if arg.is_empty() {
                    self.info(format!("System prompt:\n{}", self.system));
                } else {
                    self.system = arg.to_string();
                    self.info("System prompt set.");
                }
            }
            "persona" => {
                if arg.is_empty() {
                    let list: Vec<String> = self
                        .personas
                        .iter()
                        .map(|p| {
                            format!(
                                "{}{} — {}",
                                if p.name == self.persona.name {
                                    "* "
                                } else {
                                    "  "
                                },
                                p.name,
                                p.title
                            )
                        })
                        .collect();
                    self.info(format!("Personas:\n{}", list.join("\n")));
                } else if let Some(p) = self.personas.iter().find(|p| p.name == arg).cloned() {
                    self.system = p.system.clone();
                    self.sampling = p.sampling.clone();
                    self.info(format!("Persona: {} — {}", p.name, p.title));
                    self.persona = p;
                } else {
                    let names: Vec<&str> = self.personas.iter().map(|p| p.name.as_str()).collect();
                    self.info(format!("No persona {arg:?} (have: {})", names.join(", ")));
                }
            }
            "set" => {
                let mut it = arg.split_whitespace();
                match (it.next(), it.next()) {
                    (Some(k), Some(v)) => match self.sampling.set(k, v) {
                        Ok(()) => self.info(format!("Sampling: {}", self.sampling.describe())),
                        Err(e) => self.info(e),
                    },
                    _ => self.info(format!("Sampling: {}\nusage: /set temp|top_p|top_k|min_p|repeat_penalty|max_tokens VALUE", self.sampling.describe())),
                }
            }
            "save" => match self.store.save(arg, &self.snapshot()) {
                Ok(p) => self.info(format!("Saved to {}", p.display())),
                Err(e) => self.info(format!("error: {e:#}")),
            },
            "load" => match self.store.load(arg) {
                Ok(s) => {
                    if let Some(p) = self.personas.iter().find(|p| p.name == s.persona).cloned() {
                        self.persona = p;
                    }
                    self.system = s.system;
                    self.sampling = s.sampling;
                    self.lines = s
                        .turns
                        .into_iter()
                        .map(|t| Line {
                            role: if t.role == "user" {
                                Role::User
                            } else {
                                Role::Assistant
                            },
                            text: t.content,
                            interrupted: t.interrupted,
                        })
                        .collect();
                    self.info(format!("Loaded {arg:?} (persona {}).", self.persona.name));
                    return vec![Command::Reset];
                }
                Err(e) => self.info(format!("error: {e:#}")),
            },
            "sessions" => {
                let l = self.store.list();
                if l.is_empty() {
                    self.info(format!(
                        "No saved sessions in {}",
                        self.store.dir().display()
                    ));
                } else {
                    self.info(format!("Saved sessions: {}", l.join(", ")));
                }
            }
            "help" | "?" => self.info(HELP),
            "quit" | "exit" | "q" => self.quit = true,
            other => self.info(format!("Unknown command /{other}: /help lists them.")),
        }
        Vec::new()
    }
}
