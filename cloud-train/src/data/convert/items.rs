//! The records of the files `data convert` reads: JSON lines, a JSON array or object (with the
//! line each element starts on, for error messages), one JSON object per file, Parquet rows.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Value};

use crate::data::DataError;

/// Where an item sits in its file, for messages: `line N` (JSONL, JSON arrays and objects) or
/// `row N` (Parquet).
pub type Location = String;

/// The items of one file: JSONL lines; a JSON array's elements or a JSON object's values
/// (CrossWOZ); a JSON file holding one object (MuTual); Parquet rows. `.gz` is read through
/// gzip.
pub fn read_items(path: &Path) -> Result<Vec<(Location, Value)>, DataError> {
    let name = path.to_string_lossy().to_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".parquet") {
        return read_parquet(path);
    }
    let bytes = std::fs::read(path).map_err(DataError::io(path))?;
    let bytes = if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&bytes[..]), &mut out)
            .map_err(DataError::io(path))?;
        out
    } else {
        bytes
    };
    let text = String::from_utf8(bytes)
        .map_err(|e| DataError::format(path, format!("not UTF-8 ({e})")))?;
    if name.ends_with(".jsonl") {
        let mut items = Vec::new();
        for (k, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v = serde_json::from_str(line)
                .map_err(|e| DataError::format(path, format!("line {}: not JSON ({e})", k + 1)))?;
            items.push((format!("line {}", k + 1), v));
        }
        return Ok(items);
    }
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| DataError::format(path, format!("line {}: not JSON ({e})", e.line())))?;
    let starts = top_level_starts(&text);
    Ok(match v {
        Value::Array(a) => a
            .into_iter()
            .enumerate()
            .map(|(k, v)| {
                let line = starts.get(k).map_or(1, |s| s.0);
                (format!("line {line}"), v)
            })
            .collect(),
        // A dialogue map (CrossWOZ: id -> dialogue), in file order, unless the object is
        // itself one record (a value that is not an object).
        Value::Object(o) if !o.is_empty() && o.values().all(Value::is_object) => {
            let line_of: BTreeMap<&str, usize> = starts
                .iter()
                .filter_map(|(line, key)| key.as_deref().map(|k| (k, *line)))
                .collect();
            let mut items: Vec<(usize, String, Value)> = o
                .into_iter()
                .map(|(key, v)| (line_of.get(key.as_str()).copied().unwrap_or(1), key, v))
                .collect();
            items.sort_by_key(|(line, _, _)| *line);
            items
                .into_iter()
                .map(|(line, key, v)| (format!("line {line} ({key:?})"), v))
                .collect()
        }
        v => vec![("line 1".to_string(), v)],
    })
}

/// The 1-based line where each element of the top-level array, or each key of the top-level
/// object (with the key), starts.
fn top_level_starts(text: &str) -> Vec<(usize, Option<String>)> {
    let (mut depth, mut line) = (0usize, 1usize);
    let (mut in_string, mut escaped, mut expecting) = (false, false, false);
    let mut object = false;
    let mut key: Option<String> = None;
    let mut starts: Vec<(usize, Option<String>)> = Vec::new();
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    in_string = false;
                    if let Some(k) = key.take() {
                        if let Some(last) = starts.last_mut() {
                            *last = (last.0, Some(k));
                        }
                    }
                }
                _ => {}
            }
            if let Some(k) = key.as_mut().filter(|_| in_string) {
                k.push(c);
            }
            continue;
        }
        if depth == 1 && expecting && !c.is_whitespace() && c != ']' && c != '}' {
            starts.push((line, None));
            expecting = false;
            if object && c == '"' {
                key = Some(String::new());
            }
        }
        match c {
            '"' => in_string = true,
            '[' | '{' => {
                depth += 1;
                if depth == 1 {
                    object = c == '{';
                    expecting = true;
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 1 => expecting = true,
            _ => {}
        }
    }
    starts
}

fn read_parquet(path: &Path) -> Result<Vec<(Location, Value)>, DataError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let bad = |e: parquet::errors::ParquetError| DataError::format(path, format!("parquet: {e}"));
    let file = std::fs::File::open(path).map_err(DataError::io(path))?;
    let reader = SerializedFileReader::new(file).map_err(bad)?;
    let mut items = Vec::new();
    for (k, row) in reader.get_row_iter(None).map_err(bad)?.enumerate() {
        let row = row.map_err(bad)?;
        let object: serde_json::Map<String, Value> = row
            .get_column_iter()
            .map(|(name, field)| (name.clone(), field_json(field)))
            .collect();
        items.push((format!("row {}", k + 1), Value::Object(object)));
    }
    Ok(items)
}

fn field_json(f: &parquet::record::Field) -> Value {
    use parquet::record::Field;
    match f {
        Field::Null => Value::Null,
        Field::Bool(b) => json!(b),
        Field::Byte(x) => json!(x),
        Field::Short(x) => json!(x),
        Field::Int(x) => json!(x),
        Field::Long(x) => json!(x),
        Field::UByte(x) => json!(x),
        Field::UShort(x) => json!(x),
        Field::UInt(x) => json!(x),
        Field::ULong(x) => json!(x),
        Field::Float(x) => json!(x),
        Field::Double(x) => json!(x),
        Field::Str(s) => json!(s),
        Field::Bytes(b) => json!(String::from_utf8_lossy(b.data())),
        Field::Group(row) => Value::Object(
            row.get_column_iter()
                .map(|(n, f)| (n.clone(), field_json(f)))
                .collect(),
        ),
        Field::ListInternal(list) => Value::Array(list.elements().iter().map(field_json).collect()),
        Field::MapInternal(map) => Value::Array(
            map.entries()
                .iter()
                .map(|(k, v)| json!([field_json(k), field_json(v)]))
                .collect(),
        ),
        other => json!(other.to_string()),
    }
}
