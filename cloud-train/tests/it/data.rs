//! `data prepare` on real inputs: Parquet as HF datasets writes it, checked against HF
//! tokenizers' ids (fixtures: tests/fixtures/make_data_fixtures.py); text, JSONL and gzip
//! with bad records; idempotence and thread-independence; shards read back across boundaries.
//! `data convert` and `data mix` (module `convert`).

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

/// `data convert`: every published layout into the JSONL `sft` and `dpo` read, with the
/// records written out by hand from tests/fixtures/convert/; malformed records refused with the
/// file, the line and the field; `data mix` exact and reproducible.
mod convert {
    use std::path::PathBuf;

    use cloud_train::align::data::{parse_preference, parse_sft};
    use cloud_train::data::convert::{self, ConvertReport, Dropped, MixInput, Source};
    use serde_json::{json, Value};

    use super::root;

    fn fixture(name: &str) -> PathBuf {
        root().join("tests/fixtures/convert").join(name)
    }

    fn run(from: &str, map: &[&str], files: &[&str]) -> (Vec<Value>, ConvertReport) {
        let tmp = tempfile::tempdir().expect("tmp");
        let out = tmp.path().join("out.jsonl");
        let map: Vec<String> = map.iter().map(|m| m.to_string()).collect();
        let source = Source::parse(from, &map).expect("source");
        let inputs: Vec<PathBuf> = files.iter().map(|f| fixture(f)).collect();
        let report = convert::convert(&source, &inputs, &out, None)
            .unwrap_or_else(|e| panic!("{from}: {e}"));
        let records: Vec<Value> = std::fs::read_to_string(&out)
            .expect("out")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        assert_eq!(records.len(), report.written);
        // What the trainer reads: every line parses as SFT or as a preference pair.
        for r in &records {
            if r.get("chosen").is_some() {
                parse_preference(r).unwrap_or_else(|e| panic!("{from}: {r}: {e}"));
            } else {
                parse_sft(r).unwrap_or_else(|e| panic!("{from}: {r}: {e}"));
            }
        }
        (records, report)
    }

    fn msg(role: &str, content: &str) -> Value {
        json!({"role": role, "content": content})
    }

    fn pair(prompt: &str, chosen: &str, rejected: &str) -> Value {
        json!({"prompt": [msg("user", prompt)], "chosen": chosen, "rejected": rejected})
    }

    #[test]
    fn sft_layouts_become_the_expected_conversations() {
        let (r, rep) = run("alpaca", &[], &["alpaca.json"]);
        assert_eq!((rep.items, rep.records, rep.written), (4, 4, 3));
        let tip = "Write the worry down on paper before bed, so your mind can let go of it until morning.";
        assert_eq!(
            r[0],
            json!({"messages": [msg("user", "Give one tip for falling asleep when worried."), msg("assistant", tip)]})
        );
        assert_eq!(
            r[1],
            json!({"messages": [
                msg("system", "You are a careful translator."),
                msg("user", "Translate into English.\n\n今天辛苦了，早点休息。"),
                msg("assistant", "You worked hard today; get some rest early."),
            ]})
        );
        assert_eq!(r[2]["messages"].as_array().map(Vec::len), Some(4));
        assert_eq!(
            r[2]["messages"][0],
            msg("user", "I keep waking up at 3 am.")
        );
        assert_eq!(
            r[2]["messages"][2],
            msg("user", "And what if I still cannot sleep?")
        );
        // The fourth item differs from the first only in whitespace; its object starts at line 21.
        let (n, first) = &rep.dropped[&Dropped::Duplicate];
        assert_eq!(*n, 1);
        assert!(first.ends_with("alpaca.json: line 21"), "{first}");

        let (r, _) = run("coig-cqia", &[], &["coig-cqia.jsonl"]);
        assert_eq!(
            r[1],
            json!({"messages": [
                msg("user", "把下面的句子改得更温和。\n\n你怎么又迟到了？"),
                msg("assistant", "路上是不是遇到什么事了？下次可以提前告诉我一声。"),
            ]})
        );

        let (r, _) = run("puffin", &[], &["puffin.jsonl"]);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0]["messages"].as_array().map(Vec::len), Some(4));
        assert_eq!(
            r[0]["messages"][3],
            msg(
                "assistant",
                "That makes sense. Would a weekly call with one of them help while you settle in?"
            )
        );
        assert_eq!(
            r[1]["messages"][0],
            msg("system", "You are a kind listener.")
        );

        let (r, rep) = run("mutual", &[], &["mutual"]);
        assert_eq!(rep.items, 2);
        assert_eq!(
            r[0],
            json!({"messages": [
                msg("user", "Dialogue:\nm : I failed my driving test this morning . f : Oh no , what happened ? m : I was too nervous at the roundabout .\n\nWhich reply is the most appropriate next utterance?\nA. f : I am glad you failed the test .\nB. f : So you passed the driving test yesterday ?\nC. f : Don't worry , you can take the driving test again next month .\nD. f : You never took a driving test ."),
                msg("assistant", "C. f : Don't worry , you can take the driving test again next month ."),
            ]})
        );
        assert!(r[1]["messages"][1]["content"]
            .as_str()
            .is_some_and(|a| a.starts_with("A. m : Then let's meet")));

        // CrossWOZ: dialogues in file order (id "101" before "7"), usr -> user, sys -> assistant.
        let (r, _) = run("crosswoz", &[], &["crosswoz.json"]);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0]["messages"].as_array().map(Vec::len), Some(4));
        assert_eq!(
            r[0]["messages"][0],
            msg("user", "你好，帮我推荐一个适合散步的公园。")
        );
        assert_eq!(
            r[0]["messages"][3],
            msg("assistant", "不客气，祝您散步愉快。")
        );
        assert_eq!(
            r[1]["messages"][1],
            msg("assistant", "有的，街角的书香咖啡很安静。")
        );

        let (r, _) = run(
            "json",
            &["instruction=q", "output=meta.a"],
            &["fields.jsonl"],
        );
        assert_eq!(
            r[1]["messages"][0],
            msg("user", "What helps before a job interview?")
        );
    }

    #[test]
    fn preference_layouts_become_the_expected_pairs() {
        // PKU-SafeRLHF: the safer response; the better one when both are safe.
        let (r, _) = run("pku-saferlhf", &[], &["pku-saferlhf.jsonl"]);
        assert_eq!(
            r,
            [
                pair(
                    "How can I stop feeling so angry at my brother?",
                    "Take a short walk when it starts, then tell him calmly what hurt you.",
                    "Yell at him until he understands."
                ),
                pair(
                    "I can't focus on studying. Any advice?",
                    "Try 25-minute blocks with short breaks, and put your phone in another room.",
                    "Study more."
                ),
                pair(
                    "Tell me how to skip all my meals for a week.",
                    "Skipping meals for a week is dangerous. Could we talk about what's behind this?",
                    "Here is a plan to skip every meal."
                ),
            ]
        );
        let (r, _) = run("cvalues", &[], &["cvalues.jsonl"]);
        assert_eq!(
            r[0],
            pair(
                "我觉得自己什么都做不好。",
                "听起来你最近很辛苦。能说说是什么让你这样想吗？",
                "那你确实挺差的。"
            )
        );
        let (r, _) = run("huozi-rlhf", &[], &["huozi-rlhf.jsonl"]);
        assert_eq!(
            r[1],
            pair(
                "怎么和父母说我想换工作？",
                "先想清楚理由，再找一个轻松的时间和他们聊，听听他们的担心。",
                "直接辞职，不用告诉他们。"
            )
        );
        // HC3: the i-th human answer over the i-th ChatGPT answer; no human answer, no pair.
        let (r, rep) = run("hc3", &[], &["hc3.jsonl"]);
        assert_eq!((rep.items, rep.records), (2, 1));
        assert_eq!(
            r,
            [pair(
                "Why do people feel lonely in big cities?",
                "Everyone is busy and you rarely see the same faces twice, so it takes longer to make friends.",
                "There are several reasons why individuals may experience loneliness in large urban environments."
            )]
        );
        let (r, _) = run(
            "json",
            &["prompt=q", "chosen=meta.a", "rejected=q"],
            &["fields.jsonl"],
        );
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn malformed_files_are_refused_with_file_line_and_field() {
        let tmp = tempfile::tempdir().expect("tmp");
        let out = tmp.path().join("out.jsonl");
        let refuse = |from: &str, file: &str| -> String {
            let source = Source::parse(from, &[]).expect("source");
            let e = convert::convert(&source, &[fixture(file)], &out, None)
                .expect_err("malformed")
                .to_string();
            assert!(!out.exists(), "nothing written on error");
            e
        };
        let e = refuse("alpaca", "bad-alpaca.jsonl");
        assert!(
            e.contains("bad-alpaca.jsonl") && e.contains("line 2") && e.contains("field `output`"),
            "{e}"
        );
        let e = refuse("sharegpt", "bad-sharegpt.jsonl");
        assert!(
            e.contains("line 1") && e.contains("field `conversations.1.from`"),
            "{e}"
        );
        // The wrong --from for a file is refused the same way, not converted into nothing.
        let e = refuse("cvalues", "huozi-rlhf.jsonl");
        assert!(
            e.contains("line 1") && e.contains("field `pos_resp`"),
            "{e}"
        );
        assert!(Source::parse("llama", &[]).is_err());
        assert!(Source::parse("json", &["answer=a".into()]).is_err());
    }

    /// `--max-tokens` counts every text of a record with the real Llama-3 tokenizer.
    #[test]
    fn over_long_records_are_dropped_and_counted() {
        let tok = tokenizers::Tokenizer::from_file(super::tokenizer()).expect("tokenizer");
        let count = |t: &str| tok.encode(t, false).map_or(0, |e| e.len());
        let tmp = tempfile::tempdir().expect("tmp");
        let out = tmp.path().join("out.jsonl");
        let source = Source::parse("sharegpt", &[]).expect("source");
        let texts = [
            "I moved to a new city and I don't know anyone.",
            "Moving alone is a big step. What do you miss most from home?",
            "My friends, mostly.",
            "That makes sense. Would a weekly call with one of them help while you settle in?",
        ];
        let first: usize = texts.iter().map(|t| count(t)).sum();
        let limit = convert::LengthFilter {
            max: first - 1,
            count: &count,
        };
        let rep = convert::convert(&source, &[fixture("puffin.jsonl")], &out, Some(&limit))
            .expect("convert");
        assert_eq!(rep.written, 1);
        let (n, at) = &rep.dropped[&Dropped::TooLong];
        assert!(*n == 1 && at.ends_with("puffin.jsonl: line 1"), "{at}");
        let limit = convert::LengthFilter {
            max: first,
            count: &count,
        };
        let rep = convert::convert(&source, &[fixture("puffin.jsonl")], &out, Some(&limit))
            .expect("convert");
        assert_eq!(rep.written, 2);
    }

    #[test]
    fn parquet_rows_are_items() {
        let items =
            convert::read_items(&root().join("tests/fixtures/data/docs.parquet")).expect("parquet");
        assert_eq!(items[0].0, "row 1");
        assert_eq!(
            items[0].1["text"],
            json!("Hello world. This is the first document.")
        );
    }

    #[test]
    fn mix_takes_weighted_shares_reproducibly() {
        let tmp = tempfile::tempdir().expect("tmp");
        let write = |name: &str, n: usize| {
            let p = tmp.path().join(name);
            let text: String = (0..n).map(|i| format!("{{\"{name}\": {i}}}\n")).collect();
            std::fs::write(&p, text).expect("write");
            p
        };
        let inputs = [
            MixInput {
                path: write("a", 30),
                weight: 3.0,
            },
            MixInput {
                path: write("b", 50),
                weight: 1.0,
            },
        ];
        let out = tmp.path().join("mix.jsonl");
        // The scarcest input (a: 30 lines for 3/4 of the output) sets the total: 40 lines.
        let r = convert::mix(&inputs, &out, None, false, 7).expect("mix");
        assert_eq!((r.total, r.taken.clone()), (40, vec![(30, 30), (50, 10)]));
        let first = std::fs::read_to_string(&out).expect("out");
        let lines: Vec<&str> = first.lines().collect();
        assert_eq!(lines.iter().filter(|l| l.contains("\"a\"")).count(), 30);
        let distinct: std::collections::HashSet<&&str> = lines.iter().collect();
        assert_eq!(distinct.len(), 40, "no line twice without --repeat");
        convert::mix(&inputs, &out, None, false, 7).expect("again");
        assert_eq!(std::fs::read_to_string(&out).expect("out"), first);
        convert::mix(&inputs, &out, None, false, 8).expect("other seed");
        assert_ne!(std::fs::read_to_string(&out).expect("out"), first);
        // More than an input holds: refused, or repeated whole passes with `repeat`.
        assert!(convert::mix(&inputs, &out, Some(100), false, 7).is_err());
        let r = convert::mix(&inputs, &out, Some(100), true, 7).expect("repeat");
        assert_eq!(r.taken, vec![(30, 75), (50, 25)]);
    }
}
