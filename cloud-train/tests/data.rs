//! `data prepare` on real inputs: Parquet as HF datasets writes it, checked against HF
//! tokenizers' ids (fixtures: tests/fixtures/make_data_fixtures.py); text, JSONL and gzip
//! with bad records; idempotence and thread-independence; shards read back across boundaries.

use std::path::{Path, PathBuf};

use cloud_train::data::prepare::{prepare, PrepareOptions, Prepared};
use cloud_train::data::TokenStore;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tokenizer() -> PathBuf {
    let p = root().join("assets/llama3-tokenizer.json");
    assert!(
        p.exists(),
        "{} missing: run scripts/fetch-assets.sh",
        p.display()
    );
    p
}

fn run(opts: &PrepareOptions) -> Prepared {
    prepare(opts, |_, _| {}).unwrap_or_else(|e| panic!("prepare: {e}"))
}

fn tokens(dir: &Path, split: &str) -> Vec<u32> {
    let s = TokenStore::open(dir)
        .expect("open")
        .stream(split)
        .expect("split");
    let mut out = vec![0; s.len() as usize];
    assert!(s.read(0, &mut out));
    out
}

#[test]
fn parquet_documents_match_hf_tokenizers() {
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/data/expected.json")).expect("json"),
    )
    .expect("json");
    let eos = expected["eos_id"].as_u64().expect("eos") as u32;
    let mut want = Vec::new();
    let mut starts = Vec::new();
    for d in expected["documents"].as_array().expect("docs") {
        starts.push(want.len() as u64);
        want.extend(
            d["ids"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|v| v.as_u64().expect("id") as u32),
        );
        want.push(eos);
    }
    let tmp = tempfile::tempdir().expect("tmp");
    for file in ["docs.parquet", "docs-zstd.parquet"] {
        let out = tmp.path().join(file);
        let mut opts = PrepareOptions::new(
            vec![root().join("tests/fixtures/data").join(file)],
            out.clone(),
            tokenizer(),
        );
        opts.val_fraction = 0.0;
        let done = run(&opts);
        let m = &done.manifest;
        assert_eq!(tokens(&out, "train"), want, "{file}");
        assert_eq!(
            m.skipped["empty"],
            expected["skipped_empty"].as_u64().expect("n"),
            "{file}"
        );
        assert_eq!(m.eos_token, "<|end_of_text|>");
        let docs: Vec<u64> = std::fs::read(out.join("train.docs"))
            .expect("docs")
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
            .collect();
        assert_eq!(docs, starts, "{file}: document starts");
    }
}

/// A folder of mixed inputs with every kind of bad record.
fn mixed_inputs(dir: &Path) {
    use std::io::Write;
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir");
    std::fs::write(
        dir.join("a.txt"),
        b"First paragraph.\n\nSecond\nparagraph.\n\n\xff\xfe bad\n",
    )
    .expect("w");
    let mut jsonl = String::new();
    for i in 0..50 {
        jsonl.push_str(&format!("{{\"text\": \"document number {i}\"}}\n"));
    }
    jsonl.push_str("{\"text\": \n{\"title\": \"no text\"}\n\n{\"text\": \"\"}\n");
    jsonl.push_str(&format!("{{\"text\": \"{}\"}}\n", "x".repeat(300)));
    std::fs::write(dir.join("sub/b.jsonl"), jsonl).expect("w");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all("{\"text\": \"压缩的中文文档\"}\n".as_bytes())
        .expect("gz");
    std::fs::write(dir.join("sub/c.jsonl.gz"), gz.finish().expect("gz")).expect("w");
    std::fs::write(dir.join("notes.csv"), "ignored").expect("w");
}

#[test]
fn bad_records_are_counted_and_output_is_idempotent() {
    let tmp = tempfile::tempdir().expect("tmp");
    let input = tmp.path().join("raw");
    mixed_inputs(&input);
    let out = tmp.path().join("prepared");
    let mut opts = PrepareOptions::new(vec![input.clone()], out.clone(), tokenizer());
    opts.read.max_doc_bytes = 200;
    opts.val_fraction = 0.2;
    opts.shard_tokens = 50;
    let first = run(&opts);
    let m = &first.manifest;
    assert!(!first.up_to_date);
    assert_eq!(first.ignored.len(), 1, "notes.csv");
    assert_eq!(m.documents(), 2 + 50 + 1);
    let skipped: Vec<(&str, u64)> = m
        .skipped
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .filter(|(_, v)| *v > 0)
        .collect();
    assert_eq!(
        skipped,
        vec![
            ("empty", 2),
            ("invalid_utf8", 1),
            ("malformed_json", 1),
            ("no_text_field", 1),
            ("too_long", 1)
        ]
    );
    let val = m.split("val").expect("val");
    assert!(val.documents > 0 && val.documents < 20, "{val:?}");
    assert!(
        m.split("train").expect("train").shards.len() > 2,
        "small shards: {m:?}"
    );
    let summary = m.summary();
    assert!(
        summary.contains("53 documents") && summary.contains("too_long 1"),
        "{summary}"
    );

    // Unchanged inputs: nothing to do.
    assert!(run(&opts).up_to_date);
    // Forced, on one thread: the same bytes.
    let snapshot = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .expect("ls")
            .map(|e| {
                let p = e.expect("entry").path();
                (
                    p.file_name().expect("name").to_string_lossy().into_owned(),
                    std::fs::read(&p).expect("read"),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = snapshot(&out);
    opts.force = true;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    pool.install(|| run(&opts));
    assert_eq!(
        snapshot(&out),
        before,
        "output depends on threads or is not deterministic"
    );
    // A changed input makes it stale.
    opts.force = false;
    std::fs::write(input.join("a.txt"), "Changed.\n").expect("w");
    let again = run(&opts);
    assert!(!again.up_to_date);
    assert_eq!(again.manifest.documents(), 1 + 50 + 1);
}

#[test]
fn windows_read_across_shard_boundaries() {
    let tmp = tempfile::tempdir().expect("tmp");
    let input = tmp.path().join("raw");
    mixed_inputs(&input);
    let read_windows = |shard_tokens: u64| -> Vec<Vec<u32>> {
        let out = tmp.path().join(format!("p{shard_tokens}"));
        let mut opts = PrepareOptions::new(vec![input.clone()], out.clone(), tokenizer());
        opts.val_fraction = 0.0;
        opts.shard_tokens = shard_tokens;
        run(&opts);
        let s = TokenStore::open(&out)
            .expect("open")
            .stream("train")
            .expect("train");
        let mut w = Vec::new();
        (0..s.windows(16))
            .map(|i| {
                assert!(s.window(i, 16, &mut w));
                w.clone()
            })
            .collect()
    };
    let one = read_windows(1 << 20);
    assert!(one.len() > 10);
    assert_eq!(read_windows(7), one);
    // Consecutive windows share their boundary token.
    assert_eq!(one[0][16], one[1][0]);
}

#[test]
fn bad_input_is_reported_with_the_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let input = tmp.path().join("raw");
    mixed_inputs(&input);
    let out = tmp.path().join("prepared");
    let missing = tmp.path().join("nope.json");
    let e = prepare(
        &PrepareOptions::new(vec![input.clone()], out.clone(), missing.clone()),
        |_, _| {},
    )
    .err()
    .expect("no tokenizer");
    assert!(e.to_string().contains("nope.json"), "{e}");
    let mut opts = PrepareOptions::new(
        vec![root().join("tests/fixtures/data/docs.parquet")],
        out.clone(),
        tokenizer(),
    );
    opts.read.text_field = "body".into();
    let e = prepare(&opts, |_, _| {}).err().expect("no column");
    assert!(
        e.to_string().contains("docs.parquet") && e.to_string().contains("columns: id, text"),
        "{e}"
    );
    // An unrelated folder is never replaced.
    let docs = tmp.path().join("mine");
    std::fs::create_dir(&docs).expect("mkdir");
    std::fs::write(docs.join("keep.txt"), "keep").expect("w");
    let e = prepare(
        &PrepareOptions::new(vec![input], docs.clone(), tokenizer()),
        |_, _| {},
    )
    .err()
    .expect("refused");
    assert!(e.to_string().contains("refusing"), "{e}");
    assert_eq!(
        std::fs::read_to_string(docs.join("keep.txt")).expect("kept"),
        "keep"
    );
    assert!(!out.exists(), "no partial output");
}
