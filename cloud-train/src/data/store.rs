//! Prepared token shards, memory-mapped, read back as one token stream per split and cut into
//! training windows.

use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::manifest::Manifest;
use super::DataError;

/// A prepared directory.
pub struct TokenStore {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl TokenStore {
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, DataError> {
        let dir = dir.as_ref().to_path_buf();
        let manifest = Manifest::read(&dir)?;
        Ok(Self { dir, manifest })
    }

    /// The token stream of a split (`train` or `val`), every shard mapped and size-checked.
    pub fn stream(&self, split: &str) -> Result<TokenStream, DataError> {
        let info = self.manifest.split(split).ok_or_else(|| {
            DataError::format(
                self.dir.join("manifest.json"),
                format!("no split {split:?}"),
            )
        })?;
        let mut shards = Vec::with_capacity(info.shards.len());
        let mut start = 0u64;
        for (file, tokens) in &info.shards {
            let p = self.dir.join(file);
            let f = std::fs::File::open(&p).map_err(DataError::io(&p))?;
            let len = f.metadata().map_err(DataError::io(&p))?.len();
            if len != tokens * 4 {
                return Err(DataError::format(
                    &p,
                    format!(
                        "{len} bytes, the manifest says {tokens} tokens ({} bytes): truncated or replaced; prepare the data again",
                        tokens * 4
                    ),
                ));
            }
            // SAFETY: the shard is only read, and prepared directories are replaced by rename,
            // never rewritten in place, so the mapped file does not change under us.
            let map = unsafe { Mmap::map(&f) }.map_err(DataError::io(&p))?;
            shards.push((start, map));
            start += tokens;
        }
        Ok(TokenStream {
            shards,
            len: start,
            eos: self.manifest.eos_id,
        })
    }
}

/// The concatenation of a split's shards.
pub struct TokenStream {
    /// (first token index, mapped bytes)
    shards: Vec<(u64, Mmap)>,
    len: u64,
    pub eos: u32,
}

impl TokenStream {
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Windows of `seq_len + 1` tokens (inputs and shifted targets) starting every `seq_len`
    /// tokens: consecutive windows share one token, as in Megatron's GPT dataset.
    pub fn windows(&self, seq_len: usize) -> u64 {
        if self.len <= seq_len as u64 {
            0
        } else {
            (self.len - 1) / seq_len as u64
        }
    }

    /// Copy tokens `[start, start + out.len())` into `out`; false when out of range.
    pub fn read(&self, start: u64, out: &mut [u32]) -> bool {
        if start + out.len() as u64 > self.len {
            return false;
        }
        if out.is_empty() {
            return true;
        }
        let mut pos = start;
        let mut filled = 0;
        // The shard holding `pos`: the last one starting at or before it.
        let mut s = self.shards.partition_point(|(first, _)| *first <= pos) - 1;
        while filled < out.len() {
            let (first, map) = &self.shards[s];
            let offset = (pos - first) as usize;
            let avail = map.len() / 4 - offset;
            let n = avail.min(out.len() - filled);
            for (dst, src) in out[filled..filled + n]
                .iter_mut()
                .zip(map[offset * 4..(offset + n) * 4].chunks_exact(4))
            {
                *dst = u32::from_le_bytes([src[0], src[1], src[2], src[3]]);
            }
            filled += n;
            pos += n as u64;
            s += 1;
        }
        true
    }

    /// Window `index` (see [`TokenStream::windows`]) into `out` (`seq_len + 1` tokens).
    pub fn window(&self, index: u64, seq_len: usize, out: &mut Vec<u32>) -> bool {
        out.resize(seq_len + 1, 0);
        index < self.windows(seq_len) && self.read(index * seq_len as u64, out)
    }
}
