//! The Llama-3 model in burn.

pub mod init;
pub mod llama;
pub mod params;
pub mod rope;

pub use llama::{Block, Dims, Llama};

use burn::prelude::*;

/// The value of a one-element tensor on the host (NaN if the backend cannot give it back).
pub fn scalar(t: Tensor<1>) -> f64 {
    t.into_data()
        .convert::<f64>()
        .try_into_vec::<f64>()
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(f64::NAN)
}
