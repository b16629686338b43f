//! The C ABI: include/edge_runtime.h declares every exported function, and a C program
//! (tests/c/test_api.c) compiled with the system C compiler links libedge_runtime and runs.

use crate::common;

use std::path::PathBuf;
use std::process::Command;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn header_declares_every_exported_function() {
    let src = std::fs::read_to_string(crate_dir().join("src/ffi.rs")).expect("ffi.rs");
    let header =
        std::fs::read_to_string(crate_dir().join("include/edge_runtime.h")).expect("header");
    let exported: Vec<&str> = src
        .split("extern \"C\" fn ")
        .skip(1)
        .filter_map(|rest| rest.split('(').next())
        .collect();
    assert!(exported.len() >= 10, "{exported:?}");
    for f in exported {
        assert!(
            header.contains(&format!("{f}(")),
            "{f} is exported but not declared in edge_runtime.h"
        );
    }
}

#[test]
fn c_program_links_and_runs() {
    // The cdylib built together with this test binary sits beside it in target/<profile>/deps
    // (the copy one level up may come from another profile's build, e.g. an unoptimized one).
    let exe = std::env::current_exe().expect("exe");
    let profile_dir = exe.parent().expect("target/<profile>/deps");
    let lib = profile_dir.join("libedge_runtime.so");
    if !cfg!(target_os = "linux") {
        return test_support::skip(
            "edge-runtime::c_program_links_and_runs",
            "the C test is wired for Linux shared libraries only",
        );
    }
    assert!(lib.exists(), "{} was not built", lib.display());
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    if !test_support::have_tool(&cc) {
        return test_support::skip(
            "edge-runtime::c_program_links_and_runs",
            "no C compiler (`cc`, or $CC)",
        );
    }
    let out = std::env::temp_dir().join(format!("edge-c-test-{}", std::process::id()));
    let status = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-o"])
        .arg(&out)
        .arg(crate_dir().join("tests/c/test_api.c"))
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg("-L")
        .arg(profile_dir)
        .args(["-ledge_runtime", "-lpthread"])
        .arg(format!("-Wl,-rpath,{}", profile_dir.display()))
        .status()
        .expect("running the C compiler");
    assert!(status.success(), "compiling test_api.c failed");
    // cargo's LD_LIBRARY_PATH lists target/<profile> first: point the loader at our copy.
    let run = Command::new(&out)
        .arg(common::smollm2_path())
        .env("LD_LIBRARY_PATH", profile_dir)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    let _ = std::fs::remove_file(&out);
    assert!(run.status.success(), "C test failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("C API OK"), "{stdout}");
}
