//! GGUF -> GGUF with another file type, like `llama-quantize --allow-requantize`: tensors whose
//! type does not change are copied byte for byte; the others are dequantized to f32 and
//! quantized again with ggml's reference quantizers; metadata is kept, `general.file_type`
//! updated.

use std::path::Path;

use llama_spec::gguf::{GgufFile, GgufWriter, MetadataValue, TensorSpec};

use crate::convert::{quantize_rows, Summary};
use crate::policy::{FileType, Override, Policy};
use crate::progress::Progress;
use crate::Error;

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
    for (t, spec) in src.tensors().iter().zip(&specs) {
        let data = src.tensor_data(t);
        if spec.ggml_type == t.ggml_type {
            w.write_data(data)?;
            bytes += data.len() as u64;
        } else {
            let x =
                llama_spec::quant::dequantize_to_vec(t.ggml_type, data, t.n_elements() as usize)
                    .map_err(|e| {
                        Error::msg(format!("{}: tensor {}: {e}", input.display(), t.name))
                    })?;
            let q = quantize_rows(spec.ggml_type, &x, t.dims[0] as usize)?;
            bytes += q.len() as u64;
            w.write_data(&q)?;
        }
        bar.advance(&t.name, spec.ggml_type, t.n_elements() * 4);
    }
    w.finish()?;
    bar.finish();
    Ok(Summary {
        tensors: specs.len(),
        bytes,
        seconds: start.elapsed().as_secs_f64(),
    })
}
