//! `quantize inspect`: the metadata and tensor table of a GGUF file.

use std::io::{self, Write};
use std::path::Path;

use anyhow::Result;
use llama_spec::gguf::{ArrayValue, GgufFile, MetadataValue};

pub fn run(path: &Path, tensors: bool, json: bool, max_items: usize) -> Result<()> {
    let file = GgufFile::open(path)?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    if json {
        serde_json::to_writer_pretty(&mut out, &to_json(&file, tensors))?;
        writeln!(out)?;
    } else {
        write_table(&mut out, &file, tensors, max_items)?;
    }
    out.flush()?;
    Ok(())
}

fn value_kind(v: &MetadataValue) -> (String, usize) {
    match v {
        MetadataValue::Array(a) => (format!("[{}]", a.elem_type()), a.len()),
        other => (other.value_type().to_string(), 1),
    }
}

fn write_table(
    out: &mut impl Write,
    file: &GgufFile,
    tensors: bool,
    max_items: usize,
) -> Result<()> {
    let h = &file.header;
    writeln!(out, "* File: {}", file.path().display())?;
    writeln!(
        out,
        "* GGUF v{}, alignment {}, tensor data at byte offset {}",
        h.version, h.alignment, h.data_offset
    )?;
    writeln!(out, "* Dumping {} key/value pair(s)", h.metadata.len() + 3)?;
    let mut i = 0;
    let mut row =
        |out: &mut dyn Write, kind: &str, n: usize, key: &str, value: String| -> io::Result<()> {
            i += 1;
            writeln!(out, "{i:7}: {kind:10} | {n:8} | {key} = {value}")
        };
    row(out, "UINT32", 1, "GGUF.version", h.version.to_string())?;
    row(
        out,
        "UINT64",
        1,
        "GGUF.tensor_count",
        h.tensors.len().to_string(),
    )?;
    row(
        out,
        "UINT64",
        1,
        "GGUF.kv_count",
        h.metadata.len().to_string(),
    )?;
    for (k, v) in h.metadata.iter() {
        let (kind, n) = value_kind(v);
        row(out, &kind, n, k, v.display_short(max_items))?;
    }
    if tensors {
        writeln!(out, "* Dumping {} tensor(s)", h.tensors.len())?;
        for (i, t) in h.tensors.iter().enumerate() {
            let mut dims: Vec<String> = t.dims.iter().map(|d| format!("{d:5}")).collect();
            dims.resize(4, format!("{:5}", 1));
            writeln!(
                out,
                "{:7}: {:10} | {} | {:7} | {}",
                i + 1,
                t.n_elements(),
                dims.join(", "),
                t.ggml_type.name(),
                t.name
            )?;
        }
        let total: u64 = h.tensors.iter().map(|t| t.n_bytes()).sum();
        let params: u64 = h.tensors.iter().map(|t| t.n_elements()).sum();
        writeln!(
            out,
            "* {} tensors, {:.2} M parameters, {:.2} MiB of tensor data ({:.3} bits per weight)",
            h.tensors.len(),
            params as f64 / 1e6,
            total as f64 / (1024.0 * 1024.0),
            if params > 0 {
                total as f64 * 8.0 / params as f64
            } else {
                0.0
            }
        )?;
    }
    Ok(())
}

fn json_value(v: &MetadataValue) -> serde_json::Value {
    use serde_json::json;
    match v {
        MetadataValue::U8(x) => json!(x),
        MetadataValue::I8(x) => json!(x),
        MetadataValue::U16(x) => json!(x),
        MetadataValue::I16(x) => json!(x),
        MetadataValue::U32(x) => json!(x),
        MetadataValue::I32(x) => json!(x),
        MetadataValue::F32(x) => json!(x),
        MetadataValue::Bool(x) => json!(x),
        MetadataValue::String(x) => json!(x),
        MetadataValue::U64(x) => json!(x),
        MetadataValue::I64(x) => json!(x),
        MetadataValue::F64(x) => json!(x),
        MetadataValue::Array(a) => json_array(a),
    }
}

fn json_array(a: &ArrayValue) -> serde_json::Value {
    use serde_json::json;
    match a {
        ArrayValue::U8(v) => json!(v),
        ArrayValue::I8(v) => json!(v),
        ArrayValue::U16(v) => json!(v),
        ArrayValue::I16(v) => json!(v),
        ArrayValue::U32(v) => json!(v),
        ArrayValue::I32(v) => json!(v),
        ArrayValue::F32(v) => json!(v),
        ArrayValue::Bool(v) => json!(v),
        ArrayValue::String(v) => json!(v),
        ArrayValue::U64(v) => json!(v),
        ArrayValue::I64(v) => json!(v),
        ArrayValue::F64(v) => json!(v),
        ArrayValue::Array(v) => v.iter().map(json_array).collect(),
    }
}

fn to_json(file: &GgufFile, tensors: bool) -> serde_json::Value {
    let h = &file.header;
    let metadata: serde_json::Map<String, serde_json::Value> = h
        .metadata
        .iter()
        .map(|(k, v)| {
            let (kind, _) = value_kind(v);
            (
                k.to_string(),
                serde_json::json!({"type": kind, "value": json_value(v)}),
            )
        })
        .collect();
    let mut doc = serde_json::json!({
        "file": file.path().display().to_string(),
        "version": h.version,
        "alignment": h.alignment,
        "data_offset": h.data_offset,
        "metadata": metadata,
    });
    if tensors {
        doc["tensors"] = h
            .tensors
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name, "type": t.ggml_type.name(), "dims": t.dims,
                    "offset": t.offset, "n_bytes": t.n_bytes(),
                })
            })
            .collect();
    }
    doc
}
