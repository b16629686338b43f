//! `data prepare`: raw corpora -> token shards. Records are read in order, tokenized in
//! parallel by batches, and written in order, so the output is the same bytes whatever the
//! thread count. Each document goes to `val` or `train` by a seeded hash of its ordinal.
//! The whole directory is built beside the target and renamed into place; an up-to-date
//! output (same fingerprint) is left alone.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::manifest::{InputFile, Manifest, SplitInfo, FORMAT, MANIFEST};
use super::sources::{list_inputs, read_file, ReadOptions, Record, Skip};
use super::{splitmix64, DataError};

#[derive(Debug, Clone)]
pub struct PrepareOptions {
    pub inputs: Vec<PathBuf>,
    pub out: PathBuf,
    /// An HF `tokenizer.json`.
    pub tokenizer: PathBuf,
    pub read: ReadOptions,
    /// Fraction of documents held out for validation.
    pub val_fraction: f64,
    pub seed: u64,
    /// The document separator; by default the tokenizer's end-of-text token.
    pub eos_token: Option<String>,
    /// Tokens per shard file.
    pub shard_tokens: u64,
    /// Rebuild even when the output is up to date.
    pub force: bool,
}

impl PrepareOptions {
    pub fn new(inputs: Vec<PathBuf>, out: PathBuf, tokenizer: PathBuf) -> Self {
        Self {
            inputs,
            out,
            tokenizer,
            read: ReadOptions::default(),
            val_fraction: 0.01,
            seed: 0,
            eos_token: None,
            shard_tokens: 1 << 28,
            force: false,
        }
    }
}

/// The outcome of [`prepare`].
pub struct Prepared {
    pub manifest: Manifest,
    /// The output was already up to date; nothing was written.
    pub up_to_date: bool,
    /// Files inside input directories that were not read (unknown kind).
    pub ignored: Vec<PathBuf>,
}

/// End-of-text tokens tried, in order, when none is given.
const EOS_CANDIDATES: [&str; 4] = ["<|end_of_text|>", "<|endoftext|>", "</s>", "<eos>"];

/// Text per tokenization batch.
const BATCH_BYTES: usize = 4 << 20;

/// Tokenize `opts.inputs` into `opts.out`. `progress(bytes_read, bytes_total)` is called as
/// the inputs are read.
pub fn prepare(
    opts: &PrepareOptions,
    mut progress: impl FnMut(u64, u64),
) -> Result<Prepared, DataError> {
    if !(0.0..1.0).contains(&opts.val_fraction) {
        return Err(DataError::format(
            &opts.out,
            format!("val fraction {} must be in [0, 1)", opts.val_fraction),
        ));
    }
    let (files, ignored) = list_inputs(&opts.inputs)?;
    let mut inputs = Vec::with_capacity(files.len());
    for f in &files {
        let meta = std::fs::metadata(f).map_err(DataError::io(f))?;
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        inputs.push(InputFile {
            path: f.display().to_string(),
            bytes: meta.len(),
            modified_ns,
        });
    }
    let tok_bytes = std::fs::read(&opts.tokenizer).map_err(DataError::io(&opts.tokenizer))?;
    let tokenizer_sha256 = hex(&Sha256::digest(&tok_bytes));
    let tokenizer = llama_spec::tokenizer::from_tokenizer_json(&opts.tokenizer)
        .map_err(|e| DataError::format(&opts.tokenizer, e.to_string()))?;
    let (eos_token, eos_id) = pick_eos(&tokenizer, opts.eos_token.as_deref())
        .ok_or_else(|| {
            DataError::format(
                &opts.tokenizer,
                match &opts.eos_token {
                    Some(t) => format!("no token {t:?} in the vocabulary"),
                    None => format!(
                        "none of {EOS_CANDIDATES:?} in the vocabulary: name the document separator with --eos-token"
                    ),
                },
            )
        })?;
    let fingerprint = {
        let key = serde_json::json!({
            "format": FORMAT, "inputs": inputs, "read": opts.read, "tokenizer": tokenizer_sha256,
            "eos": eos_token, "val_fraction": opts.val_fraction, "seed": opts.seed,
            "shard_tokens": opts.shard_tokens,
        });
        hex(&Sha256::digest(key.to_string().as_bytes()))
    };
    if !opts.force {
        if let Ok(m) = Manifest::read(&opts.out) {
            if m.fingerprint == fingerprint && files_present(&opts.out, &m) {
                return Ok(Prepared {
                    manifest: m,
                    up_to_date: true,
                    ignored,
                });
            }
        }
    }

    let staging =
        llama_spec::atomic::staging_dir(&opts.out, "tmp").map_err(DataError::io(&opts.out))?;
    let total_bytes: u64 = inputs.iter().map(|f| f.bytes).sum();
    let result = (|| {
        let mut train = SplitWriter::new(&staging, "train", opts.shard_tokens);
        let mut val = SplitWriter::new(&staging, "val", opts.shard_tokens);
        let mut skipped: BTreeMap<Skip, u64> = BTreeMap::new();
        let mut text_bytes = 0u64;
        let mut ordinal = 0u64;
        let mut batch: Vec<String> = Vec::new();
        let mut batch_bytes = 0usize;
        let mut done_bytes = 0u64;
        let mut flush = |batch: &mut Vec<String>,
                         skipped: &mut BTreeMap<Skip, u64>,
                         train: &mut SplitWriter,
                         val: &mut SplitWriter|
         -> Result<(), DataError> {
            let encoded: Vec<Option<Vec<u32>>> = batch
                .par_iter()
                .map(|t| {
                    tokenizer
                        .encode_fast(t.as_str(), true)
                        .ok()
                        .map(|e| e.get_ids().to_vec())
                })
                .collect();
            for (text, ids) in batch.drain(..).zip(encoded) {
                match ids {
                    Some(ids) if !ids.is_empty() => {
                        text_bytes += text.len() as u64;
                        let to_val = opts.val_fraction > 0.0
                            && unit(splitmix64(opts.seed ^ splitmix64(ordinal)))
                                < opts.val_fraction;
                        ordinal += 1;
                        let w = if to_val { &mut *val } else { &mut *train };
                        w.push(&ids, eos_id)?;
                    }
                    Some(_) => *skipped.entry(Skip::Empty).or_default() += 1,
                    None => *skipped.entry(Skip::TokenizerError).or_default() += 1,
                }
            }
            Ok(())
        };
        for (file, info) in files.iter().zip(&inputs) {
            let count = Rc::new(Cell::new(0u64));
            let mut sink = |r: Record| -> Result<(), DataError> {
                match r {
                    Ok(text) => {
                        batch_bytes += text.len();
                        batch.push(text);
                        if batch_bytes >= BATCH_BYTES {
                            flush(&mut batch, &mut skipped, &mut train, &mut val)?;
                            batch_bytes = 0;
                            progress(done_bytes + count.get(), total_bytes);
                        }
                    }
                    Err(why) => *skipped.entry(why).or_default() += 1,
                }
                Ok(())
            };
            read_file(file, &opts.read, count.clone(), &mut sink)?;
            done_bytes += info.bytes;
        }
        flush(&mut batch, &mut skipped, &mut train, &mut val)?;
        progress(total_bytes, total_bytes);
        let mut splits = BTreeMap::new();
        splits.insert("train".to_string(), train.finish()?);
        splits.insert("val".to_string(), val.finish()?);
        let manifest = Manifest {
            format: FORMAT.into(),
            fingerprint,
            tokenizer_sha256,
            eos_token,
            eos_id,
            read: opts.read.clone(),
            val_fraction: opts.val_fraction,
            seed: opts.seed,
            inputs,
            splits,
            text_bytes,
            skipped: Skip::ALL
                .iter()
                .map(|s| (s.name().to_string(), skipped.get(s).copied().unwrap_or(0)))
                .collect(),
        };
        let p = staging.join(MANIFEST);
        let json = serde_json::to_string_pretty(&manifest)
            .map_err(|e| DataError::format(&p, e.to_string()))?;
        llama_spec::atomic::write_atomic(&p, format!("{json}\n").as_bytes())
            .map_err(DataError::io(&p))?;
        llama_spec::atomic::swap_dir(&staging, &opts.out, MANIFEST)
            .map_err(DataError::io(&opts.out))?;
        Ok(manifest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    Ok(Prepared {
        manifest: result?,
        up_to_date: false,
        ignored,
    })
}

fn pick_eos(tok: &tokenizers::Tokenizer, wanted: Option<&str>) -> Option<(String, u32)> {
    match wanted {
        Some(t) => tok.token_to_id(t).map(|id| (t.to_string(), id)),
        None => EOS_CANDIDATES
            .iter()
            .find_map(|t| tok.token_to_id(t).map(|id| (t.to_string(), id))),
    }
}

fn files_present(dir: &Path, m: &Manifest) -> bool {
    m.splits.values().all(|s| {
        s.shards
            .iter()
            .all(|(f, n)| std::fs::metadata(dir.join(f)).is_ok_and(|md| md.len() == n * 4))
            && std::fs::metadata(dir.join(&s.docs_file)).is_ok_and(|md| md.len() == s.documents * 8)
    })
}

/// A 64-bit hash to [0, 1).
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Appends documents (and their EOS) to one split's shards.
struct SplitWriter {
    dir: PathBuf,
    name: &'static str,
    shard_tokens: u64,
    shards: Vec<(String, u64)>,
    current: Option<BufWriter<File>>,
    docs: Option<BufWriter<File>>,
    documents: u64,
    tokens: u64,
}

impl SplitWriter {
    fn new(dir: &Path, name: &'static str, shard_tokens: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            name,
            shard_tokens: shard_tokens.max(1),
            shards: Vec::new(),
            current: None,
            docs: None,
            documents: 0,
            tokens: 0,
        }
    }

    fn docs_file(&self) -> String {
        format!("{}.docs", self.name)
    }

    fn push(&mut self, ids: &[u32], eos: u32) -> Result<(), DataError> {
        if self.docs.is_none() {
            let p = self.dir.join(self.docs_file());
            self.docs = Some(BufWriter::new(File::create(&p).map_err(DataError::io(&p))?));
        }
        if let Some(d) = self.docs.as_mut() {
            let p = self.dir.join(format!("{}.docs", self.name));
            d.write_all(&self.tokens.to_le_bytes())
                .map_err(DataError::io(&p))?;
        }
        self.documents += 1;
        for &t in ids.iter().chain(std::iter::once(&eos)) {
            let full = self
                .shards
                .last()
                .is_none_or(|(_, n)| *n >= self.shard_tokens);
            if full {
                self.close_shard()?;
                let file = format!("{}-{:05}.tok", self.name, self.shards.len());
                let p = self.dir.join(&file);
                self.current = Some(BufWriter::with_capacity(
                    1 << 20,
                    File::create(&p).map_err(DataError::io(&p))?,
                ));
                self.shards.push((file, 0));
            }
            let (file, n) = self.shards.last_mut().expect("a shard is open");
            if let Some(w) = self.current.as_mut() {
                w.write_all(&t.to_le_bytes())
                    .map_err(DataError::io(self.dir.join(&*file)))?;
            }
            *n += 1;
            self.tokens += 1;
        }
        Ok(())
    }

    fn close_shard(&mut self) -> Result<(), DataError> {
        if let (Some(w), Some((file, _))) = (self.current.take(), self.shards.last()) {
            let p = self.dir.join(file);
            let f = w
                .into_inner()
                .map_err(|e| DataError::io(&p)(e.into_error()))?;
            f.sync_all().map_err(DataError::io(&p))?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<SplitInfo, DataError> {
        self.close_shard()?;
        let p = self.dir.join(self.docs_file());
        match self.docs.take() {
            Some(d) => {
                let f = d
                    .into_inner()
                    .map_err(|e| DataError::io(&p)(e.into_error()))?;
                f.sync_all().map_err(DataError::io(&p))?;
            }
            None => {
                File::create(&p).map_err(DataError::io(&p))?;
            }
        }
        Ok(SplitInfo {
            documents: self.documents,
            tokens: self.tokens,
            docs_file: self.docs_file(),
            shards: self.shards,
        })
    }
}
