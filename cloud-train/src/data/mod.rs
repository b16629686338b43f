//! Training data: raw corpora tokenized once into memory-mappable shards ([`prepare`]), read
//! back as token streams cut into windows ([`store`]), and blended at exact ratios ([`mixer`]).
//!
//! A prepared directory holds, per split (`train`, `val`), shards of little-endian `u32` token
//! ids (`train-00000.tok`, ...) in which every document ends with the EOS token, the start
//! offset of every document (`train.docs`, little-endian `u64`), and `manifest.json`.

pub mod convert;
pub mod manifest;
pub mod mixer;
pub mod prepare;
pub mod sources;
pub mod store;

use std::path::PathBuf;

pub use manifest::Manifest;
pub use mixer::{Mixer, MixerCorpus, OnExhausted, Permutation};
pub use prepare::{prepare, PrepareOptions};
pub use store::{TokenStore, TokenStream};

/// What went wrong with which file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    /// Corpora that cannot be mixed as configured.
    #[error("{0}")]
    Mixture(String),
}

impl DataError {
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        DataError::Format {
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>) -> impl Fn(std::io::Error) -> Self {
        let path = path.into();
        move |source| DataError::Io {
            path: path.clone(),
            source,
        }
    }
}

/// SplitMix64: a tiny, fixed, seedable generator. Written out here (not taken from a crate) so
/// that shuffles and splits stay the same across dependency upgrades.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
