//! docs/claims.md lists which test holds each claim of the README and docs. Every test it
//! names must exist, so the list cannot silently point at a renamed or deleted test.

use std::collections::BTreeSet;

/// The (file, test function) pairs of each table row: the first backticked `*.rs` path, then
/// every backticked identifier after it (a row may name several files, each followed by its
/// tests).
fn named_tests(doc: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in doc.lines().filter(|l| l.starts_with('|')) {
        let mut file: Option<String> = None;
        for (i, tok) in line.split('`').enumerate() {
            if i % 2 == 0 {
                continue;
            }
            if tok.ends_with(".rs") {
                file = Some(tok.to_string());
            } else if let Some(f) = &file {
                if !tok.is_empty() && tok.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    out.push((f.clone(), tok.to_string()));
                }
            }
        }
    }
    out
}

#[test]
fn every_test_named_in_claims_md_exists() {
    let root = test_support::repo();
    let doc = std::fs::read_to_string(root.join("docs/claims.md")).expect("docs/claims.md");
    let named = named_tests(&doc);
    assert!(named.len() >= 30, "only {} tests named", named.len());
    let mut missing = BTreeSet::new();
    for (file, test) in &named {
        let src = std::fs::read_to_string(root.join(file)).unwrap_or_default();
        if !src.contains(&format!("fn {test}(")) {
            missing.insert(format!("{file}: fn {test}"));
        }
    }
    assert!(
        missing.is_empty(),
        "docs/claims.md names tests that do not exist: {missing:?}"
    );
}

#[test]
fn rows_pair_files_with_their_tests() {
    let doc = "| a | `x/a.rs` `t1`, `t2`; `y/b.rs` `t3` | 1e-6 |\n| text `notcode` |";
    assert_eq!(
        named_tests(doc),
        [("x/a.rs", "t1"), ("x/a.rs", "t2"), ("y/b.rs", "t3")]
            .map(|(f, t)| (f.to_string(), t.to_string()))
    );
}
