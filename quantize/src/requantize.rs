//! GGUF -> GGUF with another file type, like `llama-quantize --allow-requantize`: tensors whose
//! type does not change are copied byte for byte; the others are dequantized to f32 and
//! quantized again with ggml's reference quantizers; metadata is kept, `general.file_type`
//! updated.

use std::path::Path;

use llama_spec::gguf::{GgufFile, GgufWriter, MetadataValue, TensorSpec};

use llama_spec::quant;

use crate::convert::Summary;
use crate::policy::{FileType, Override, Policy};
use crate::progress::Progress;
use crate::{stream, Error};

pub fn requantize(
    input: &Path,
    out: &Path,
    ftype: FileType,
    overrides: &[Override],
    progress: bool,
) -> Result<Summary, Error> {
    let start = std::time::Instant::now();
    let src = GgufFile::open(input)?;
    use llama_spec::config::{keys, Architecture};
    // The layer count under the file's architecture prefix (`llama.`, `qwen2.`).
    let arch = src
        .metadata()
        .get(keys::ARCHITECTURE)
        .and_then(MetadataValue::as_str)
        .and_then(Architecture::from_gguf_name)
        .unwrap_or_default();
    let n_layers = src
        .metadata()
        .get(&arch.key(keys::BLOCK_COUNT))
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
    let w = GgufWriter::create(out, &md, &specs)?;
    let total: u64 = src.tensors().iter().map(|t| t.n_elements() * 4).sum();
    let mut bar = Progress::new("requantize", total, progress);
    let mut bytes = 0u64;
    let file_start = src.bytes().as_ptr() as usize;
    stream::write_streamed(w, |emit| {
        for (t, spec) in src.tensors().iter().zip(&specs) {
            let data = src.tensor_data(t);
            let at = data.as_ptr() as usize - file_start;
            let ne0 = t.dims[0] as usize;
            let n_rows = (t.n_elements() as usize / ne0.max(1)).max(1);
            let row_bytes = data.len() / n_rows;
            for rows in stream::row_steps(n_rows, ne0) {
                let part = &data[rows.start * row_bytes..rows.end * row_bytes];
                let parts = if spec.ggml_type == t.ggml_type {
                    stream::copy_parts(part)
                } else {
                    let (from, to) = (t.ggml_type, spec.ggml_type);
                    stream::map_rows(part, row_bytes, ne0, |chunk, n| {
                        let x =
                            quant::dequantize_to_vec(from, chunk, n).map_err(|e| e.to_string())?;
                        quant::quantize_to_vec(to, &x).map_err(|e| e.to_string())
                    })
                    .map_err(|e| {
                        Error::msg(format!("{}: tensor {}: {e}", input.display(), t.name))
                    })?
                };
                for p in parts {
                    bytes += p.len() as u64;
                    if !emit(p) {
                        return Ok(()); // the writer failed; write_streamed returns its error
                    }
                }
                // Done with these source rows: their pages leave this process's memory.
                src.release_pages(at + rows.start * row_bytes..at + rows.end * row_bytes);
                bar.advance(&t.name, spec.ggml_type, (rows.len() * ne0) as u64 * 4);
            }
        }
        Ok(())
    })?;
    bar.finish();
    Ok(Summary {
        tensors: specs.len(),
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    })
}
