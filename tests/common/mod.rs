//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh scratch folder under the target dir, removed first if it exists.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gfr-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the `gfr` binary with `args`, from the repository root.
pub fn gfr(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gfr"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run gfr")
}

pub fn ok(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "gfr failed:\n{text}");
    text
}

pub fn fails(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "gfr should have failed:\n{text}");
    text
}

/// The output of a run that exited with `code` (3: some cells failed, the others done; 1: a
/// usage or setup error).
pub fn exits_with(out: &Output, code: i32) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(code), "exit status:\n{text}");
    text
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// python3 with the standard library, if this machine has it.
pub fn python() -> Option<&'static str> {
    Command::new("python3")
        .arg("-c")
        .arg("import pickle")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "python3")
}

pub fn config(dir: &Path, name: &str, json: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, json).unwrap();
    p
}

/// Runs a Python script with python3 and fails the test on a non-zero exit.
pub fn run_python(py: &str, script: &str) {
    let o = Command::new(py)
        .arg("-c")
        .arg(script)
        .output()
        .expect("run python3");
    assert!(
        o.status.success(),
        "python failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `gfr fit` with a config, data folder and save folder, quietly.
pub fn fit(config: &str, data: &Path, params: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "fit",
        "--config-path",
        config,
        "--data-dir",
        s(data),
        "--save-path",
        s(params),
        "--quiet",
    ];
    args.extend_from_slice(extra);
    gfr(&args)
}

/// `gfr network` on a small slice of the built-in sample (640 / 200 digits, `n_nodes` hidden
/// neurons unless `extra` says otherwise); returns its stdout + stderr and the saved JSON.
pub fn small_network(dir: &Path, n_nodes: &str, extra: &[&str]) -> (String, serde_json::Value) {
    let mut args = vec!["network", "--save-dir", s(dir), "--quiet", "--offline"];
    for (flag, value) in [
        ("--train-limit", "640"),
        ("--test-limit", "200"),
        ("--n-nodes", n_nodes),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    let out = ok(&gfr(&args));
    let name = out
        .lines()
        .find_map(|l| l.strip_prefix("saved "))
        .and_then(|l| l.split(" and ").next())
        .expect("saved line")
        .to_string();
    let json = serde_json::from_slice(&std::fs::read(name).unwrap()).unwrap();
    (out, json)
}
