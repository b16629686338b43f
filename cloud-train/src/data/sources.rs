//! Raw corpora in: plain text, JSON lines (optionally gzip-compressed) and Parquet as HF
//! `datasets` exports it. Each file yields documents, or the reason one record was skipped;
//! only a file that cannot be read at all is an error.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::DataError;

/// Why a record did not become a document. Counted and reported, never fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Skip {
    InvalidUtf8,
    Empty,
    BadJson,
    NoTextField,
    TooLong,
    TokenizerError,
}

impl Skip {
    pub const ALL: [Skip; 6] = [
        Skip::InvalidUtf8,
        Skip::Empty,
        Skip::BadJson,
        Skip::NoTextField,
        Skip::TooLong,
        Skip::TokenizerError,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Skip::InvalidUtf8 => "invalid_utf8",
            Skip::Empty => "empty",
            Skip::BadJson => "malformed_json",
            Skip::NoTextField => "no_text_field",
            Skip::TooLong => "too_long",
            Skip::TokenizerError => "tokenizer_error",
        }
    }
}

/// One record of an input file.
pub type Record = Result<String, Skip>;

/// How plain text files are cut into documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TxtSplit {
    /// Documents are separated by one or more blank lines.
    Paragraph,
    /// Each non-blank line is a document.
    Line,
    /// The whole file is one document.
    File,
}

/// A `--txt-split` value that is not one of the known rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: expected paragraph, line or file")]
pub struct UnknownSplit(pub String);

impl std::str::FromStr for TxtSplit {
    type Err = UnknownSplit;
    fn from_str(s: &str) -> Result<Self, UnknownSplit> {
        match s {
            "paragraph" => Ok(TxtSplit::Paragraph),
            "line" => Ok(TxtSplit::Line),
            "file" => Ok(TxtSplit::File),
            _ => Err(UnknownSplit(s.to_string())),
        }
    }
}

/// Reading options, part of the prepared data's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReadOptions {
    /// The JSON field / Parquet column holding the text.
    pub text_field: String,
    pub txt_split: TxtSplit,
    /// Longer lines (JSONL) or documents (text) are skipped as `too_long`.
    pub max_doc_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            text_field: "text".into(),
            txt_split: TxtSplit::Paragraph,
            max_doc_bytes: 16 << 20,
        }
    }
}

/// The kinds of input file, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Jsonl { gzip: bool },
    Parquet,
}

pub fn format_of(path: &Path) -> Option<Format> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    let has = |ext: &str| name.ends_with(ext);
    if has(".jsonl") || has(".json") || has(".ndjson") {
        Some(Format::Jsonl { gzip: false })
    } else if has(".jsonl.gz") || has(".json.gz") || has(".ndjson.gz") {
        Some(Format::Jsonl { gzip: true })
    } else if has(".parquet") {
        Some(Format::Parquet)
    } else if has(".txt") || has(".md") || has(".text") {
        Some(Format::Text)
    } else {
        None
    }
}

/// The input files, in a stable order: files as given, directories walked recursively in name
/// order (files of unknown kind inside a directory are ignored and returned separately).
pub fn list_inputs(inputs: &[PathBuf]) -> Result<(Vec<PathBuf>, Vec<PathBuf>), DataError> {
    fn walk(dir: &Path, files: &mut Vec<PathBuf>, ignored: &mut Vec<PathBuf>) -> io::Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<_>>()?;
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, files, ignored)?;
            } else if format_of(&p).is_some() {
                files.push(p);
            } else {
                ignored.push(p);
            }
        }
        Ok(())
    }
    let (mut files, mut ignored) = (Vec::new(), Vec::new());
    for p in inputs {
        let meta = std::fs::metadata(p).map_err(DataError::io(p))?;
        if meta.is_dir() {
            walk(p, &mut files, &mut ignored).map_err(DataError::io(p))?;
        } else if format_of(p).is_some() {
            files.push(p.clone());
        } else {
            return Err(DataError::format(
                p,
                "unknown kind of file: expected .txt/.md, .jsonl/.json(.gz) or .parquet",
            ));
        }
    }
    if files.is_empty() {
        let shown: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
        return Err(DataError::format(
            shown.join(", "),
            "no input files (.txt, .jsonl, .json.gz, .parquet) found",
        ));
    }
    Ok((files, ignored))
}

/// A reader that counts the bytes read from the file, for progress.
struct Counted<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Read one line (without its `\n` or `\r\n`) into `buf`. `None` at end of file;
/// `Some(false)` when the line is longer than `limit` bytes (it is consumed, `buf` left empty).
fn read_line_limited<R: BufRead + ?Sized>(
    r: &mut R,
    buf: &mut Vec<u8>,
    limit: usize,
) -> io::Result<Option<bool>> {
    buf.clear();
    let (mut any, mut too_long) = (false, false);
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            break;
        }
        any = true;
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i, i + 1),
            None => (avail.len(), avail.len()),
        };
        if !too_long {
            if buf.len() + take > limit {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&avail[..take]);
            }
        }
        let newline = done > take;
        r.consume(done);
        if newline {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(!too_long))
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

fn document(bytes: Vec<u8>) -> Record {
    match String::from_utf8(bytes) {
        Err(_) => Err(Skip::InvalidUtf8),
        Ok(s) if s.trim().is_empty() => Err(Skip::Empty),
        Ok(s) => Ok(s),
    }
}

/// Read every record of `path` into `sink`; `count` is advanced by the file bytes read.
pub fn read_file(
    path: &Path,
    opts: &ReadOptions,
    count: Rc<Cell<u64>>,
    sink: &mut dyn FnMut(Record) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let format = format_of(path).ok_or_else(|| DataError::format(path, "unknown kind of file"))?;
    if format == Format::Parquet {
        let r = read_parquet(path, opts, sink);
        count.set(count.get() + std::fs::metadata(path).map_or(0, |m| m.len()));
        return r;
    }
    let file = File::open(path).map_err(DataError::io(path))?;
    let counted = Counted { inner: file, count };
    let mut reader: Box<dyn BufRead> = match format {
        Format::Jsonl { gzip: true } => Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(BufReader::new(counted)),
        )),
        _ => Box::new(BufReader::with_capacity(1 << 20, counted)),
    };
    let io_err = DataError::io(path);
    match format {
        Format::Jsonl { .. } => read_jsonl(&mut reader, opts, sink).map_err(|e| match e {
            ReadError::Io(e) => io_err(e),
            ReadError::Sink(e) => e,
        }),
        Format::Text => read_text(&mut reader, opts, sink).map_err(|e| match e {
            ReadError::Io(e) => io_err(e),
            ReadError::Sink(e) => e,
        }),
        Format::Parquet => Ok(()),
    }
}

enum ReadError {
    Io(io::Error),
    Sink(DataError),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

fn read_jsonl(
    r: &mut dyn BufRead,
    opts: &ReadOptions,
    sink: &mut dyn FnMut(Record) -> Result<(), DataError>,
) -> Result<(), ReadError> {
    let mut line = Vec::new();
    while let Some(fits) = read_line_limited(r, &mut line, opts.max_doc_bytes)? {
        let record = if !fits {
            Err(Skip::TooLong)
        } else if is_blank(&line) {
            Err(Skip::Empty)
        } else {
            parse_json_line(&line, &opts.text_field)
        };
        sink(record).map_err(ReadError::Sink)?;
    }
    Ok(())
}

fn parse_json_line(line: &[u8], field: &str) -> Record {
    let text = std::str::from_utf8(line).map_err(|_| Skip::InvalidUtf8)?;
    let value: serde_json::Value = serde_json::from_str(text).map_err(|_| Skip::BadJson)?;
    match value.get(field) {
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => Err(Skip::Empty),
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(serde_json::Value::Null) => Err(Skip::Empty),
        _ => Err(Skip::NoTextField),
    }
}

fn read_text(
    r: &mut dyn BufRead,
    opts: &ReadOptions,
    sink: &mut dyn FnMut(Record) -> Result<(), DataError>,
) -> Result<(), ReadError> {
    let limit = opts.max_doc_bytes;
    if opts.txt_split == TxtSplit::File {
        let mut bytes = Vec::new();
        r.take(limit as u64 + 1).read_to_end(&mut bytes)?;
        let record = if bytes.len() > limit {
            Err(Skip::TooLong)
        } else {
            document(bytes)
        };
        return sink(record).map_err(ReadError::Sink);
    }
    let mut line = Vec::new();
    // Paragraph mode: lines accumulate until a blank line; `None` once it grew too long.
    let mut para: Option<Vec<u8>> = Some(Vec::new());
    let flush = |para: &mut Option<Vec<u8>>,
                 sink: &mut dyn FnMut(Record) -> Result<(), DataError>|
     -> Result<(), ReadError> {
        match para.replace(Vec::new()) {
            Some(p) if is_blank(&p) => Ok(()),
            Some(p) => sink(document(p)).map_err(ReadError::Sink),
            None => sink(Err(Skip::TooLong)).map_err(ReadError::Sink),
        }
    };
    while let Some(fits) = read_line_limited(r, &mut line, limit)? {
        match opts.txt_split {
            TxtSplit::Line => {
                if !fits {
                    sink(Err(Skip::TooLong)).map_err(ReadError::Sink)?;
                } else if !is_blank(&line) {
                    sink(document(std::mem::take(&mut line))).map_err(ReadError::Sink)?;
                }
            }
            _ => {
                if fits && is_blank(&line) {
                    flush(&mut para, sink)?;
                    continue;
                }
                para = match para.take() {
                    Some(mut p) if fits && p.len() + line.len() < limit => {
                        if !p.is_empty() {
                            p.push(b'\n');
                        }
                        p.extend_from_slice(&line);
                        Some(p)
                    }
                    _ => None,
                };
            }
        }
    }
    if opts.txt_split == TxtSplit::Paragraph {
        flush(&mut para, sink)?;
    }
    Ok(())
}

fn read_parquet(
    path: &Path,
    opts: &ReadOptions,
    sink: &mut dyn FnMut(Record) -> Result<(), DataError>,
) -> Result<(), DataError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    use parquet::schema::types::Type;

    let bad = |e: parquet::errors::ParquetError| DataError::format(path, format!("parquet: {e}"));
    let file = File::open(path).map_err(DataError::io(path))?;
    let reader = SerializedFileReader::new(file).map_err(bad)?;
    let schema = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema();
    let fields = schema.get_fields();
    let Some(column) = fields.iter().find(|f| f.name() == opts.text_field) else {
        let names: Vec<&str> = fields.iter().map(|f| f.name()).collect();
        return Err(DataError::format(
            path,
            format!(
                "no column {:?} (columns: {}); choose one with --text-field",
                opts.text_field,
                names.join(", ")
            ),
        ));
    };
    let projection = Type::group_type_builder(schema.name())
        .with_fields(vec![column.clone()])
        .build()
        .map_err(bad)?;
    let rows = reader.get_row_iter(Some(projection)).map_err(bad)?;
    for row in rows {
        let row = row.map_err(bad)?;
        let record = match row.get_column_iter().next().map(|(_, f)| f) {
            Some(Field::Str(s)) if s.trim().is_empty() => Err(Skip::Empty),
            Some(Field::Str(s)) => Ok(s.clone()),
            Some(Field::Bytes(b)) => document(b.data().to_vec()),
            Some(Field::Null) => Err(Skip::Empty),
            _ => Err(Skip::NoTextField),
        };
        sink(record)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &[u8], format: &str, opts: &ReadOptions) -> Vec<Record> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(format!("input.{format}"));
        std::fs::write(&path, text).expect("write");
        let mut out = Vec::new();
        read_file(&path, opts, Rc::default(), &mut |r| {
            out.push(r);
            Ok(())
        })
        .expect("read");
        out
    }

    #[test]
    fn jsonl_counts_every_kind_of_bad_line() {
        let opts = ReadOptions {
            max_doc_bytes: 60,
            ..ReadOptions::default()
        };
        let long = format!("{{\"text\": \"{}\"}}", "x".repeat(80));
        let mut text = Vec::new();
        for line in [
            br#"{"text": "hello"}"#.as_slice(),
            b"",
            br#"{"text": "#,
            br#"{"body": "no text"}"#,
            br#"{"text": 3}"#,
            br#"{"text": "   "}"#,
            long.as_bytes(),
            b"{\"text\": \"caf\xe9\"}",
            "{\"text\": \"\u{4f60}\u{597d}\"}\r".as_bytes(),
        ] {
            text.extend_from_slice(line);
            text.push(b'\n');
        }
        let got = records(&text, "jsonl", &opts);
        assert_eq!(
            got,
            vec![
                Ok("hello".to_string()),
                Err(Skip::Empty),
                Err(Skip::BadJson),
                Err(Skip::NoTextField),
                Err(Skip::NoTextField),
                Err(Skip::Empty),
                Err(Skip::TooLong),
                Err(Skip::InvalidUtf8),
                Ok("\u{4f60}\u{597d}".to_string()),
            ]
        );
    }

    #[test]
    fn text_paragraphs_lines_and_files() {
        let text = b"one\ntwo\n\n\n three \n\nfour\xff\n\nlast";
        let para = ReadOptions::default();
        assert_eq!(
            records(text, "txt", &para),
            vec![
                Ok("one\ntwo".to_string()),
                Ok(" three ".to_string()),
                Err(Skip::InvalidUtf8),
                Ok("last".to_string()),
            ]
        );
        let line = ReadOptions {
            txt_split: TxtSplit::Line,
            ..ReadOptions::default()
        };
        assert_eq!(records(b"a\n\nb\r\n", "txt", &line).len(), 2);
        let file = ReadOptions {
            txt_split: TxtSplit::File,
            max_doc_bytes: 4,
            ..ReadOptions::default()
        };
        assert_eq!(records(b"abcd", "txt", &file), vec![Ok("abcd".into())]);
        assert_eq!(records(b"abcde", "txt", &file), vec![Err(Skip::TooLong)]);
        let short = ReadOptions {
            max_doc_bytes: 8,
            ..ReadOptions::default()
        };
        assert_eq!(
            records(b"0123\n4567\n\nok", "txt", &short),
            vec![Err(Skip::TooLong), Ok("ok".into())]
        );
    }

    #[test]
    fn gzip_jsonl() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"{\"text\": \"a\"}\n{\"text\": \"b\"}\n")
            .expect("gzip");
        let bytes = enc.finish().expect("gzip");
        let got = records(&bytes, "jsonl.gz", &ReadOptions::default());
        assert_eq!(got, vec![Ok("a".into()), Ok("b".into())]);
    }
}
