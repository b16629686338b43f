//! Saved conversations: one JSON file per name under the platform data directory
//! (`directories`), or `$EDGE_CHAT_DATA_DIR` / `--data-dir`; written atomically.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::persona::Sampling;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub role: String,
    pub content: String,
    /// The reply was stopped with Esc (shown as such again after `/load`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedSession {
    pub persona: String,
    pub system: String,
    pub sampling: Sampling,
    pub turns: Vec<Turn>,
    /// The model file the conversation was held with (informational).
    #[serde(default)]
    pub model: String,
}

/// Why a session could not be saved or loaded (names the session or the file).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("session name {0:?}: use letters, digits, - _ . (no spaces or slashes)")]
    BadName(String),
    #[error("no saved session {name:?} ({}): {source}", path.display())]
    Missing {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a saved session: {source}", path.display())]
    Format {
        path: PathBuf,
        source: serde_json::Error,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// Session names become file names: letters, digits, `-`, `_`, `.`, and CJK; nothing else.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(StoreError::BadName(name.to_string()));
    }
    Ok(())
}

impl Store {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// `$EDGE_CHAT_DATA_DIR`, else the platform data dir (e.g. `~/.local/share/edge-chat`).
    pub fn default_dir() -> PathBuf {
        if let Some(d) = std::env::var_os("EDGE_CHAT_DATA_DIR") {
            return PathBuf::from(d);
        }
        directories::ProjectDirs::from("", "", "edge-chat").map_or_else(
            || PathBuf::from(".edge-chat"),
            |p| p.data_dir().to_path_buf(),
        )
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        check_name(name)?;
        Ok(self.dir.join("sessions").join(format!("{name}.json")))
    }

    pub fn save(&self, name: &str, s: &SavedSession) -> Result<PathBuf> {
        let p = self.path(name)?;
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let json = serde_json::to_string_pretty(s).map_err(|source| StoreError::Format {
            path: p.clone(),
            source,
        })?;
        llama_spec::atomic::write_atomic(&p, json.as_bytes()).map_err(io(&p))?;
        Ok(p)
    }

    pub fn load(&self, name: &str) -> Result<SavedSession> {
        let p = self.path(name)?;
        let text = std::fs::read_to_string(&p).map_err(|source| StoreError::Missing {
            name: name.to_string(),
            path: p.clone(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| StoreError::Format { path: p, source })
    }

    pub fn list(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.join("sessions"))
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let n = e.file_name().to_string_lossy().into_owned();
                        n.strip_suffix(".json").map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}
