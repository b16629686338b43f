//! `edge-run bench` on the real SmolLM2 file: the report lines that `scripts/bench-real-sizes.py`
//! parses are printed, with values in range.

use std::process::Command;

use crate::common::smollm2_path;

#[test]
fn bench_reports_speeds_the_bound_and_the_windowed_share() {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-run"))
        .args(["bench", "-m"])
        .arg(smollm2_path())
        .args([
            "-t",
            "2",
            "-p",
            "16",
            "-n",
            "8",
            "-r",
            "1",
            "--bound-windows",
            "4",
        ])
        .output()
        .expect("edge-run runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for test in ["| pp16 |", "| tg8 |"] {
        assert!(text.contains(test), "{test} row in:\n{text}");
    }
    let bound = text
        .lines()
        .find(|l| l.starts_with("weights read per token: "))
        .expect("the bound line");
    let gbs: f64 = bound
        .split("measured read bandwidth ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|v| v.parse().ok())
        .expect("a bandwidth");
    // Any machine this runs on reads memory at 1-1000 GB/s.
    assert!((1.0..1000.0).contains(&gbs), "{bound}");
    let windows = text
        .lines()
        .find(|l| l.starts_with("decode against the bandwidth measured next to it: "))
        .expect("the windowed share line");
    assert!(
        windows.contains("windows of 8 tokens") || windows.contains("no window"),
        "{windows}"
    );
}
