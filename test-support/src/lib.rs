//! What the workspace's tests share, so that every crate applies the same rules:
//!
//! - [`skip`]: a test that cannot run on this machine (a CPU feature, a tool, an OS) skips
//!   outside CI and *fails* under CI (`CI` set), unless its name is listed in
//!   `tests/allowed-skips.txt`, the one file CI prints.
//! - [`cached`]: files that tests generate once and reuse (requantized models, converted
//!   checkpoints) live under `target/test-models/`, at a path keyed by a hash of their
//!   generator's source and their inputs, so a changed generator never reuses a stale file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// The workspace root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("workspace root")
}

/// The file that lists, one test name a line (`#` starts a comment), the tests allowed to
/// skip under CI.
pub const ALLOWED_SKIPS: &str = "tests/allowed-skips.txt";

/// Whether this run is CI's: `CI` set to anything but empty, `0` or `false` (as GitHub,
/// GitLab and our `.ci/run` set it).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// The test names listed in `list` (the text of an allowed-skips file).
pub fn allowed_skips(list: &str) -> Vec<String> {
    list.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// What a test that cannot run here does: under CI it panics (the test fails) unless `test`
/// is listed in [`ALLOWED_SKIPS`]; elsewhere it says SKIPPED on stderr and returns, so the
/// caller returns too.
///
/// `test` is the name CI's list uses: `crate::test_name` (e.g.
/// `edge-runtime::avx512_16_row_kernels_equal_scalar_bit_for_bit`).
pub fn skip(test: &str, reason: &str) {
    let listed = std::fs::read_to_string(repo().join(ALLOWED_SKIPS))
        .map(|t| allowed_skips(&t).iter().any(|n| n == test))
        .unwrap_or(false);
    if let Some(msg) = skip_verdict(test, reason, in_ci(), listed) {
        panic!("{msg}");
    }
    eprintln!("SKIPPED {test}: {reason}");
}

/// The failure message when a skip is not allowed (under CI and not listed), else `None`.
pub fn skip_verdict(test: &str, reason: &str, ci: bool, listed: bool) -> Option<String> {
    (ci && !listed).then(|| {
        format!(
            "{test} cannot run here ({reason}), and CI requires it: fix the machine, or list \
             `{test}` in {ALLOWED_SKIPS} to allow the skip"
        )
    })
}

/// Whether `tool` is an executable on `PATH`.
pub fn have_tool(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let p = dir.join(tool);
            p.is_file()
                && std::fs::metadata(&p)
                    .map(|m| {
                        use std::os::unix::fs::PermissionsExt;
                        m.permissions().mode() & 0o111 != 0
                    })
                    .unwrap_or(false)
        })
    })
}

/// The hex SHA-256 of the parts, each length-prefixed (so `["ab", "c"]` and `["a", "bc"]`
/// differ).
pub fn key(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of every file under `dir` (sorted by path, recursively) with their relative
/// paths: a generator's source as key material.
pub fn dir_source(dir: &Path) -> Vec<u8> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    let mut bytes = Vec::new();
    for f in files {
        bytes.extend_from_slice(
            f.strip_prefix(dir)
                .unwrap_or(&f)
                .to_string_lossy()
                .as_bytes(),
        );
        bytes.push(0);
        bytes.extend(std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display())));
    }
    bytes
}

/// The path of the cached file `name` (e.g. `smollm2.q8_0.gguf`) for `key`:
/// `target/test-models/<key[..16]>-<name>`.
pub fn cache_path(name: &str, key: &str) -> PathBuf {
    repo()
        .join("target/test-models")
        .join(format!("{}-{name}", &key[..16]))
}

/// The cached file `name` for `key`, made by `generate(tmp_path)` when it is not there yet.
/// `generate` writes a temporary path that is renamed into place only when it returns, so an
/// interrupted run never leaves a half-written file to be reused. Serialized within a process;
/// across processes the rename keeps readers from seeing partial files.
pub fn cached(name: &str, key: &str, generate: impl FnOnce(&Path)) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let out = cache_path(name, key);
    if out.exists() {
        return out;
    }
    let dir = out.parent().expect("parent");
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let tmp = dir.join(format!(".{}-{}.tmp", std::process::id(), name));
    if tmp.exists() {
        let _ = std::fs::remove_dir_all(&tmp);
        let _ = std::fs::remove_file(&tmp);
    }
    generate(&tmp);
    if let Err(e) = std::fs::rename(&tmp, &out) {
        // Another test process (nextest runs one per test) made the same entry meanwhile:
        // theirs is as good as ours.
        if !out.exists() {
            panic!("{} -> {}: {e}", tmp.display(), out.display());
        }
        let _ = std::fs::remove_dir_all(&tmp);
        let _ = std::fs::remove_file(&tmp);
    }
    // A note of what made it, for whoever looks inside target/test-models.
    if let Ok(mut f) = std::fs::File::create(dir.join(format!("{}-{name}.key", &key[..16]))) {
        let _ = writeln!(f, "{key}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_fails_under_ci_unless_listed() {
        assert!(
            skip_verdict("a::t", "no tmux", true, false).is_some_and(|m| m.contains(ALLOWED_SKIPS))
        );
        assert_eq!(skip_verdict("a::t", "no tmux", true, true), None);
        assert_eq!(skip_verdict("a::t", "no tmux", false, false), None);
    }

    #[test]
    fn allowed_skips_parses_names_and_comments() {
        let list = "# header\nedge-runtime::c_abi   # macOS\n\n  edge-chat::tmux_chat\n";
        assert_eq!(
            allowed_skips(list),
            ["edge-runtime::c_abi", "edge-chat::tmux_chat"]
        );
    }

    #[test]
    fn the_key_changes_with_generator_and_inputs() {
        let k = key(&[b"generator v1", b"input"]);
        assert_eq!(k, key(&[b"generator v1", b"input"]));
        assert_ne!(k, key(&[b"generator v2", b"input"]));
        assert_ne!(k, key(&[b"generator v1", b"input2"]));
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]));
        assert_ne!(
            cache_path("m.gguf", &k),
            cache_path("m.gguf", &key(&[b"generator v2", b"input"]))
        );
    }

    #[test]
    fn cached_generates_once_per_key() {
        let k = key(&[
            b"test-support::cached_generates_once_per_key",
            &std::process::id().to_le_bytes(),
        ]);
        let mut calls = 0;
        let p = cached("probe.txt", &k, |tmp| {
            calls += 1;
            std::fs::write(tmp, "one").expect("write");
        });
        let q = cached("probe.txt", &k, |_| calls += 1);
        assert_eq!((p.clone(), calls), (q, 1));
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "one");
        let _ = std::fs::remove_file(&p);
        let _ = std::fs::remove_file(p.with_file_name(format!("{}-probe.txt.key", &k[..16])));
    }
}
