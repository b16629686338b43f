//! GGUF -> GGUF with another file type, like `llama-quantize --allow-requantize`: tensors whose
//! type does not change are copied byte for byte; the others are dequantized to f32 and
//! quantized again with ggml's reference quantizers; metadata is kept, `general.file_type`
//! updated.

use std::path::Path;

use llama_spec::gguf::{GgufFile, GgufWriter, MetadataValue, TensorSpec};

use llama_spec::GgmlType;
use rayon::prelude::*;

use crate::convert::Summary;
use crate::policy::{FileType, Override, Policy};
use crate::progress::Progress;
use crate::Error;

/// Elements converted per step (16 MiB as f32): no tensor is ever held whole in f32 (the
/// embedding of a Llama-3 1B is 1 GiB so), and a step still has work for every core.
const STEP_ELEMENTS: usize = 1 << 22;

/// Rows of `from` (whole rows of `ne0`) dequantized and quantized to `to`, on all cores, a few
/// rows per task so that each task's f32 copy stays in cache.
fn requantize_rows(
    from: GgmlType,
    to: GgmlType,
    data: &[u8],
    ne0: usize,
    row_bytes: usize,
) -> Result<Vec<u8>, String> {
    let rows_per_task = (65_536 / ne0.max(1)).max(1);
    let parts: Vec<Vec<u8>> = data
        .par_chunks(rows_per_task * row_bytes)
        .map(|chunk| {
            let n = chunk.len() / row_bytes * ne0;
            let x =
                llama_spec::quant::dequantize_to_vec(from, chunk, n).map_err(|e| e.to_string())?;
            llama_spec::quant::quantize_to_vec(to, &x).map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    Ok(parts.concat())
}

pub fn requantize(
    input: &Path,
    out: &Path,
    ftype: FileType,
    overrides: &[Override],
    progress: bool,
) -> Result<Summary, Error> {
    let start = std::time::Instant::now();
    let src = GgufFile::open(input)?;
    let n_layers = src
        .metadata()
        .get("llama.block_count")
        .and_then(MetadataValue::as_u64)
        .unwrap_or(0) as u32;
    let policy = Policy {
        ftype,
        n_layers,
        tied_embeddings: src.tensor("output.weight").is_none(),
        overrides: overrides.to_vec(),
    };
    let mut md = src.metadata().clone();
    md.set("general.file_type", MetadataValue::U32(ftype.llama_ftype()));
    md.set("general.quantization_version", MetadataValue::U32(2));
    let specs: Vec<TensorSpec> = src
        .tensors()
        .iter()
        .map(|t| TensorSpec {
            ggml_type: if Policy::quantizable(&t.name, t.dims.len()) {
                policy.tensor_type(&t.name, t.dims[0], t.dims.len())
            } else {
                t.ggml_type
            },
            ..TensorSpec::from(t)
        })
        .collect();
    let mut w = GgufWriter::create(out, &md, &specs)?;
    let total: u64 = src.tensors().iter().map(|t| t.n_elements() * 4).sum();
    let mut bar = Progress::new("requantize", total, progress);
    let mut bytes = 0u64;
    let file_start = src.bytes().as_ptr() as usize;
    for (t, spec) in src.tensors().iter().zip(&specs) {
        let data = src.tensor_data(t);
        let at = data.as_ptr() as usize - file_start;
        let ne0 = t.dims[0] as usize;
        let n_rows = (t.n_elements() as usize / ne0.max(1)).max(1);
        let row_bytes = data.len() / n_rows;
        let rows_per_step = (STEP_ELEMENTS / ne0.max(1)).clamp(1, n_rows);
        for r0 in (0..n_rows).step_by(rows_per_step) {
            let rows = r0..(r0 + rows_per_step).min(n_rows);
            let part = &data[rows.start * row_bytes..rows.end * row_bytes];
            if spec.ggml_type == t.ggml_type {
                w.write_data(part)?;
                bytes += part.len() as u64;
            } else {
                let q = requantize_rows(t.ggml_type, spec.ggml_type, part, ne0, row_bytes)
                    .map_err(|e| {
                        Error::msg(format!("{}: tensor {}: {e}", input.display(), t.name))
                    })?;
                bytes += q.len() as u64;
                w.write_data(&q)?;
            }
            // Done with these source rows: their pages leave this process's memory.
            src.release_pages(at + rows.start * row_bytes..at + rows.end * row_bytes);
            bar.advance(&t.name, spec.ggml_type, (rows.len() * ne0) as u64 * 4);
        }
    }
    w.finish()?;
    bar.finish();
    Ok(Summary {
        tensors: specs.len(),
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    })
}
