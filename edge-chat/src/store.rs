//! Saved conversations: one JSON file per name under the platform data directory
//! (`directories`), or `$EDGE_CHAT_DATA_DIR` / `--data-dir`; written atomically.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
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
        bail!("session name {name:?}: use letters, digits, - _ . (no spaces or slashes)");
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
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let json = serde_json::to_string_pretty(s)?;
        llama_spec::atomic::write_atomic(&p, json.as_bytes())
            .with_context(|| format!("writing {}", p.display()))?;
        Ok(p)
    }

    pub fn load(&self, name: &str) -> Result<SavedSession> {
        let p = self.path(name)?;
        let text = std::fs::read_to_string(&p)
            .with_context(|| format!("no saved session {name:?} ({})", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: not a saved session", p.display()))
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
