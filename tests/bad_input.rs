//! Every malformed input ends in a clear error, never a panic or a partial report.

use stratbox::runtime::{Runtime, RuntimeConfig, RuntimeError};
use stratbox_tests::{SMA_CROSSOVER_WASM, cli, component_from_wit, contract_wit, contract_wit_0_1, data};

fn runtime() -> Runtime {
    Runtime::new(RuntimeConfig { max_instances: 4, ..Default::default() }).unwrap()
}

fn backtest_error(args: &[&str]) -> String {
    let (result, out) = cli(args);
    assert!(out.is_empty(), "nothing is printed on failure, got {out:?}");
    let err = result.expect_err("the command should fail");
    format!("{:#}", anyhow::Error::from(err))
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn csv_problems_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let header = "Date,Open,High,Low,Close,Volume\n";
    let cases = [
        ("bad.csv", format!("{header}2000-03-01,1,2,1,2,3\n2000-03-02,1,oops,1,2,3\n"), "line 3: high `oops`"),
        (
            "back.csv",
            format!("{header}2000-03-02,1,2,1,2,3\n2000-03-01,1,2,1,2,3\n"),
            "line 3: timestamp 2000-03-01 goes back",
        ),
        ("dup.csv", format!("{header}2000-03-02,1,2,1,2,3\n2000-03-02,1,2,1,2,3\n"), "repeats"),
        ("empty.csv", String::new(), "is empty"),
        ("header-only.csv", header.to_string(), "is empty"),
        ("short.csv", format!("{header}2000-03-01,1,2\n"), "line 2"),
        ("binary.csv", "\u{0}\u{1}\u{2}\n\u{3}".to_string(), "lacks column"),
    ];
    for (name, text, expected) in cases {
        let path = write(&dir, name, &text);
        let err = backtest_error(&["backtest", "--strategy", "sma-crossover", "--data", &path]);
        assert!(err.contains(name) && err.contains(expected), "{name}: {err}");
    }
    let err = backtest_error(&["backtest", "--strategy", "sma-crossover", "--data", "/no/such/file.csv"]);
    assert!(err.contains("/no/such/file.csv") && err.contains("No such file"), "{err}");
}

#[test]
fn parameters_are_checked_before_anything_runs() {
    let ibm = data("IBM.csv");
    let ibm = ibm.to_str().unwrap();
    let cases = [
        (vec!["--param", "fsat=3"], "unknown parameter `fsat` (known: fast, slow, qty)"),
        (vec!["--param", "fast=abc"], "parameter `fast` expects integer, got `abc`"),
        (vec!["--param", "qty=lots"], "parameter `qty` expects decimal"),
        (vec!["--param", "fast=3", "--param", "fast=4"], "given twice"),
        (vec!["--param", "fast=30"], "rejected its parameters: invalid parameter `fast`: windows must satisfy"),
        (vec!["--param", "qty=-1"], "rejected its parameters: invalid parameter `qty`"),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["backtest", "--strategy", "sma-crossover", "--data", ibm];
        args.extend(extra.iter());
        let err = backtest_error(&args);
        assert!(err.contains(expected), "{extra:?}: {err}");
    }
}

#[test]
fn files_that_are_not_components_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ibm = data("IBM.csv");
    let cases: [(&str, &[u8], &str); 4] = [
        ("text.wasm", b"hello, world", "does not start with the WebAssembly header"),
        ("core.wasm", b"\0asm\x01\0\0\0", "core WebAssembly module"),
        ("empty.wasm", b"", "does not start with the WebAssembly header"),
        ("broken.wasm", b"\0asm\x0d\0\x01\0\xff\xff\xff", "not a WebAssembly component"),
    ];
    for (name, bytes, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let err = backtest_error(&["backtest", "--strategy", path.to_str().unwrap(), "--data", ibm.to_str().unwrap()]);
        assert!(err.contains(expected), "{name}: {err}");
    }
    // A truncated copy of the real plugin.
    let real = std::fs::read(SMA_CROSSOVER_WASM).unwrap();
    let err = runtime().load("cut", &real[..real.len() / 2]).err().expect("a truncated component is refused");
    assert!(matches!(err, RuntimeError::NotAComponent { .. }), "{err}");
}

#[test]
fn another_contract_version_is_refused_by_name() {
    let bytes = component_from_wit(&contract_wit("0.3.0"), "plugin").unwrap();
    let err = runtime().load("v3", &bytes).err().expect("refused");
    let text = err.to_string();
    assert!(matches!(err, RuntimeError::WrongVersion { .. }), "{text}");
    assert!(text.contains("stratbox:strategy@0.3.0") && text.contains("0.2.0"), "{text}");
    // A compatible patch version links.
    let patch = component_from_wit(&contract_wit("0.2.9"), "plugin").unwrap();
    let err = runtime().load("patch", &patch).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(!err.contains("targets"), "0.2.9 is compatible with 0.2.0: {err}");
}

#[test]
fn a_plugin_built_for_contract_0_1_is_told_what_changed() {
    let bytes = component_from_wit(contract_wit_0_1(), "plugin").unwrap();
    let err = runtime().load("old", &bytes).err().expect("refused");
    let text = err.to_string();
    assert!(matches!(err, RuntimeError::WrongVersion { .. }), "{text}");
    for needed in ["stratbox:strategy@0.1.0", "0.2 is needed", "`instance` resource", "columns", "own id"] {
        assert!(text.contains(needed), "{needed:?} in {text}");
    }
}

#[test]
fn forbidden_imports_are_refused() {
    let cases = [
        ("wasi:sockets@0.2.0", "tcp", "connect: func();", "wasi:sockets/tcp@0.2.0"),
        ("wasi:cli@0.3.0", "stdout", "write: func();", "wasi:cli/stdout@0.3.0"),
        ("evil:host", "fs", "read: func(path: string) -> list<u8>;", "evil:host/fs"),
    ];
    for (package, iface, body, import) in cases {
        let wit = format!(
            "{}\nworld sneaky {{\n    import host;\n    import {import};\n    export strategy;\n}}\n\npackage {package} {{\n    interface {iface} {{ {body} }}\n}}\n",
            contract_wit("0.2.0")
        );
        let bytes = component_from_wit(&wit, "sneaky").unwrap();
        let err = runtime().load("sneaky", &bytes).err().expect("refused");
        assert!(matches!(&err, RuntimeError::ForbiddenImport { import: i, .. } if i == import), "{err}");
    }
}

#[test]
fn a_component_without_the_strategy_export_is_refused() {
    let wit = "package other:thing@1.0.0;\ninterface api { run: func(); }\nworld w { export api; }\n";
    let bytes = component_from_wit(wit, "w").unwrap();
    let err = runtime().load("other", &bytes).err().expect("refused");
    assert!(matches!(err, RuntimeError::MissingExport { .. }), "{err}");
}

#[test]
fn inspect_reports_and_sets_the_exit_code() {
    let (ok, out) = cli(&["plugin", "inspect", SMA_CROSSOVER_WASM]);
    assert_eq!(ok.unwrap(), std::process::ExitCode::SUCCESS);
    assert!(out.contains("contract:  stratbox:strategy@0.2.0"), "{out}");
    assert!(
        out.contains("stratbox:strategy/host@0.2.0") && out.contains("satisfies stratbox:strategy@0.2.0: yes"),
        "{out}"
    );
    assert!(out.contains("param fast (integer, default 5)"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.wasm");
    std::fs::write(&path, component_from_wit(contract_wit_0_1(), "plugin").unwrap()).unwrap();
    let (bad, out) = cli(&["plugin", "inspect", path.to_str().unwrap(), "--format", "json"]);
    assert_eq!(bad.unwrap(), std::process::ExitCode::FAILURE);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["satisfies_contract"], false);
    assert_eq!(json["contract"], "stratbox:strategy@0.1.0");
}
