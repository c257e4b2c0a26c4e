//! `stratbox new`: the project it writes builds, with the one command its
//! README gives, into a plugin that passes `inspect` and backtests.

use std::process::Command;

use stratbox_tests::{cli, data};

#[test]
fn a_new_rust_strategy_builds_inspects_and_backtests() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().to_str().unwrap();
    let (created, out) = cli(&["new", "my-streak", "--lang", "rust", "--dir", parent]);
    assert_eq!(created.unwrap(), std::process::ExitCode::SUCCESS, "{out}");
    let root = dir.path().join("my-streak");

    // The README's command, verbatim.
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let build = "cargo build --release --target wasm32-wasip2";
    assert!(readme.contains(build), "{readme}");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    // Cached between runs beside this crate's other build output.
    let target = std::path::Path::new(env!("STRATBOX_TEST_PYTHON")).with_file_name("scaffold-rust");
    let status = Command::new(cargo)
        .args(build.split(' ').skip(1))
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .unwrap();
    assert!(status.success(), "the scaffold builds: {status}");
    let wasm = target.join("wasm32-wasip2/release/my_streak.wasm");

    let (inspected, out) = cli(&["plugin", "inspect", wasm.to_str().unwrap()]);
    assert_eq!(inspected.unwrap(), std::process::ExitCode::SUCCESS, "{out}");
    assert!(out.contains("plugin:    my-streak 0.1.0") && out.contains("param run (integer, default 3)"), "{out}");

    let ibm = data("IBM.csv");
    let args = ["backtest", "--strategy", wasm.to_str().unwrap(), "--data", ibm.to_str().unwrap(), "--format", "json"];
    let (ran, out) = cli(&args);
    ran.unwrap();
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(report["bars"].as_u64().unwrap() > 1000, "{out}");
    let fills = report["fills"].as_array().unwrap();
    assert!(fills.len() >= 10, "the streak rule trades on IBM: {out}");
    assert_eq!(report["rejected"], 0, "{out}");
}

#[test]
fn a_new_python_strategy_builds_inspects_and_backtests() {
    let dir = tempfile::tempdir().unwrap();
    let parent = dir.path().to_str().unwrap();
    let (created, out) = cli(&["new", "py-streak", "--lang", "python", "--dir", parent]);
    assert_eq!(created.unwrap(), std::process::ExitCode::SUCCESS, "{out}");
    let root = dir.path().join("py-streak");

    // The README's command, verbatim, with the pinned componentize-py.
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(readme.contains(&format!("pip install {}", stratbox_tests::python::COMPONENTIZE_PY)), "{readme}");
    let build = "componentize-py -d wit -w plugin componentize --stub-wasi app -o py_streak.wasm";
    assert!(readme.contains(build), "{readme}");
    let tool = stratbox_tests::python::pip_install(stratbox_tests::python::COMPONENTIZE_PY).unwrap();
    let output = Command::new("python3")
        .arg(tool.join("bin/componentize-py"))
        .args(build.split(' ').skip(1))
        .current_dir(&root)
        .env("PYTHONPATH", &tool)
        .output()
        .unwrap();
    assert!(output.status.success(), "the scaffold builds: {}", String::from_utf8_lossy(&output.stderr));
    let wasm = root.join("py_streak.wasm");

    let (inspected, out) = cli(&["plugin", "inspect", wasm.to_str().unwrap()]);
    assert_eq!(inspected.unwrap(), std::process::ExitCode::SUCCESS, "{out}");
    assert!(out.contains("plugin:    py-streak 0.1.0") && out.contains("param run (integer, default 3)"), "{out}");

    // The same rule as the Rust scaffold, so the same trades.
    let ibm = data("IBM.csv");
    let args = ["backtest", "--strategy", wasm.to_str().unwrap(), "--data", ibm.to_str().unwrap(), "--format", "json"];
    let (ran, out) = cli(&args);
    ran.unwrap();
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let fills = report["fills"].as_array().unwrap();
    assert!(fills.len() >= 10, "the streak rule trades on IBM: {out}");
    assert_eq!(report["rejected"], 0, "{out}");
}
