//! `manifest.json` of a prepared directory: what went in, with which options and tokenizer,
//! and what came out.

use std::collections::BTreeMap;
use std::path::Path;

use super::sources::ReadOptions;
use super::DataError;

pub const MANIFEST: &str = "manifest.json";
pub const FORMAT: &str = "cloud-train-tokens/1";

/// One split's files and counts.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SplitInfo {
    pub documents: u64,
    /// Including one EOS per document.
    pub tokens: u64,
    /// Shard file names with their token counts, in stream order.
    pub shards: Vec<(String, u64)>,
    /// Document start offsets file (`u64` little-endian, one per document).
    pub docs_file: String,
}

/// One input file as seen when preparing (a change in size or time makes the output stale).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputFile {
    pub path: String,
    pub bytes: u64,
    pub modified_ns: u128,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format: String,
    /// Hash of inputs, options and tokenizer: equal fingerprints, equal output.
    pub fingerprint: String,
    pub tokenizer_sha256: String,
    pub eos_token: String,
    pub eos_id: u32,
    pub read: ReadOptions,
    pub val_fraction: f64,
    pub seed: u64,
    pub inputs: Vec<InputFile>,
    pub splits: BTreeMap<String, SplitInfo>,
    /// Input text bytes that became documents.
    pub text_bytes: u64,
    /// Skipped records by reason (`Skip::name`).
    pub skipped: BTreeMap<String, u64>,
}

impl Manifest {
    pub fn read(dir: &Path) -> Result<Self, DataError> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(DataError::io(&path))?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| {
            DataError::format(
                &path,
                format!("not a prepared-data manifest ({e}); run `cloud-train data prepare`"),
            )
        })?;
        if m.format != FORMAT {
            return Err(DataError::format(
                &path,
                format!("format {:?}, this build reads {FORMAT:?}", m.format),
            ));
        }
        Ok(m)
    }

    pub fn split(&self, name: &str) -> Option<&SplitInfo> {
        self.splits.get(name)
    }

    pub fn documents(&self) -> u64 {
        self.splits.values().map(|s| s.documents).sum()
    }

    pub fn tokens(&self) -> u64 {
        self.splits.values().map(|s| s.tokens).sum()
    }

    /// One line: documents, tokens, bytes, skips.
    pub fn summary(&self) -> String {
        let split = |n: &str| self.split(n).cloned().unwrap_or_default();
        let (train, val) = (split("train"), split("val"));
        let skipped: Vec<String> = self
            .skipped
            .iter()
            .filter(|(_, &n)| n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        format!(
            "{} documents, {} tokens (train {} docs / {} tokens, val {} docs / {} tokens), {:.3} MB of text, skipped: {}",
            self.documents(),
            self.tokens(),
            train.documents,
            train.tokens,
            val.documents,
            val.tokens,
            self.text_bytes as f64 / 1e6,
            if skipped.is_empty() {
                "none".to_string()
            } else {
                skipped.join(", ")
            }
        )
    }
}
