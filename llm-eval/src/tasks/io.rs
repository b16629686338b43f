//! Reading the benchmarks' own file formats with errors that name the file.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{EvalError, Result};

pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| EvalError::io(path, e))?;
    if path.extension().is_some_and(|e| e == "gz") {
        use std::io::Read;
        let mut s = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut s)
            .map_err(|e| EvalError::data(path, format!("not gzip'd UTF-8 text: {e}")))?;
        return Ok(s);
    }
    String::from_utf8(bytes).map_err(|e| EvalError::data(path, format!("not UTF-8: {e}")))
}

pub fn read_json(path: &Path) -> Result<Value> {
    serde_json::from_str(&read_text(path)?)
        .map_err(|e| EvalError::data(path, format!("invalid JSON: {e}")))
}

/// JSON lines (blank lines skipped); the error names the line.
pub fn read_jsonl(path: &Path) -> Result<Vec<Value>> {
    parse_jsonl(&read_text(path)?, path)
}

/// JSON lines already read from `path` (named in errors).
pub fn parse_jsonl(text: &str, path: &Path) -> Result<Vec<Value>> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| EvalError::data(path, format!("line {}: invalid JSON: {e}", i + 1)))
        })
        .collect()
}

/// CSV rows as strings; `header` says whether the first row names the columns (then skipped).
pub fn read_csv(path: &Path, header: bool) -> Result<Vec<Vec<String>>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(header)
        .flexible(true)
        .from_path(path)
        .map_err(|e| EvalError::data(path, e.to_string()))?;
    r.records()
        .map(|rec| {
            rec.map(|r| r.iter().map(str::to_string).collect())
                .map_err(|e| EvalError::data(path, e.to_string()))
        })
        .collect()
}

/// The files in `dir` whose names end with `suffix`, sorted (a missing folder is an error).
pub fn files_ending(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| EvalError::io(dir, e))?;
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(suffix))
        })
        .collect();
    v.sort();
    if v.is_empty() {
        return Err(EvalError::data(dir, format!("no *{suffix} files")));
    }
    Ok(v)
}

/// A string field, or an error naming the file, record and field.
pub fn field<'a>(v: &'a Value, key: &str, path: &Path, at: usize) -> Result<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| EvalError::data(path, format!("record {}: no string field {key:?}", at + 1)))
}
