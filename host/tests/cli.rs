//! The real binary: exit codes, and no panic on bad input.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Runs the binary to completion, killing it if it outlives ten minutes:
/// a guard against a hang, far beyond what any run needs on a slow machine.
fn stratbox(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_stratbox"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let pid = child.id().to_string();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(Duration::from_secs(600)).is_err() {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
    });
    // Reads both pipes while waiting, so a chatty child never blocks.
    let output = child.wait_with_output().expect("output is readable");
    let _ = done.send(());
    let _ = watchdog.join();
    output
}

fn data(name: &str) -> String {
    format!("{}/../data/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn assert_fails_cleanly(output: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(expected), "expected {expected:?} in {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.stdout.is_empty(), "no partial report: {}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn backtest_succeeds_with_the_bundled_plugin() {
    let output = stratbox(&["backtest", "--strategy", "sma-crossover", "--data", &data("IBM.csv"), "--format", "json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["bars"], 3270);
    assert_eq!(json["symbol"], "IBM");
}

#[test]
fn bad_inputs_exit_non_zero_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let bad_csv = dir.path().join("bad.csv");
    std::fs::write(&bad_csv, "Date,Open,High,Low,Close,Volume\n2000-01-03,1,2,1,x,5\n").unwrap();
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let ibm = data("IBM.csv");
    let cases: [(&[&str], &str); 5] = [
        (&["backtest", "--strategy", "sma-crossover", "--data", bad_csv.to_str().unwrap()], "line 2: close `x`"),
        (&["backtest", "--strategy", "sma-crossover", "--data", "/nope.csv"], "cannot read /nope.csv"),
        (&["backtest", "--strategy", core.to_str().unwrap(), "--data", &ibm], "core WebAssembly module"),
        (&["backtest", "--strategy", "sma-crossover", "--data", &ibm, "--param", "slow=x"], "expects integer"),
        (&["plugin", "inspect", "/nope.wasm"], "cannot read plugin /nope.wasm"),
    ];
    for (args, expected) in cases {
        assert_fails_cleanly(&stratbox(args), expected);
    }
}

#[test]
fn usage_errors_exit_with_2() {
    let output = stratbox(&["backtest", "--strategy", "x", "--data", "y", "--param", "novalue"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("expected KEY=VALUE"));
}

#[test]
fn run_exits_when_the_feed_is_done_if_asked() {
    let output = stratbox(&["run", "--listen", "127.0.0.1:0", "--pace-ms", "0", "--exit-when-done"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("order #1: buy 10 AAPL") && stdout.contains("pnl: realized"), "{stdout}");
    assert!(stdout.contains("feed finished") && stdout.contains("final equity"), "{stdout}");
}

#[test]
fn missing_venue_credentials_stop_startup_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alpaca.toml");
    let config = "[feed]\nkind = \"alpaca\"\nbase_url = \"http://127.0.0.1:9\"\nsymbols = [\"AAPL\"]\n\n\
                  [broker]\nkind = \"alpaca\"\nbase_url = \"http://127.0.0.1:9\"\n\n[[strategy]]\nplugin = \"sma-crossover\"\n";
    std::fs::write(&path, config).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_stratbox"))
        .args(["run", "--config", path.to_str().unwrap()])
        .env_remove("APCA_API_KEY_ID")
        .env_remove("APCA_API_SECRET_KEY")
        .output()
        .unwrap();
    assert_fails_cleanly(&output, "set the environment variable APCA_API_KEY_ID");
}

#[test]
fn a_bad_config_names_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[feed]\nkind = \"replay\"\ndata = \"bundled:AAPL\"\nsymbol = \"AAPL\"\npace = 3\n").unwrap();
    let output = stratbox(&["run", "--config", path.to_str().unwrap()]);
    assert_fails_cleanly(&output, "key `feed.pace`: unknown field `pace`, expected one of");
    assert!(String::from_utf8_lossy(&output.stderr).contains("c.toml"));
}

#[test]
fn bench_runs_both_sides_on_the_same_bars_and_they_agree() {
    // Not a timing test: it checks the benchmark's two runs trade identically.
    let output = stratbox(&["bench", "--bars", "20000", "--format", "json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["plugin"]["bars"], 20000);
    assert!(json["plugin"]["fills"].as_u64().unwrap() > 100);
    assert_eq!(json["plugin"]["fills"], json["native"]["fills"]);
}

#[test]
fn sign_prints_a_curl_command_with_the_standard_signature() {
    let output = stratbox(&[
        "sign",
        "--secret",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "--id",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "--timestamp",
        "1614265330",
        "--body",
        r#"{"test": 2432232314}"#,
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="), "{stdout}");
    assert!(stdout.starts_with("curl ") && stdout.contains("--data-binary '{\"test\": 2432232314}'"), "{stdout}");
    assert_fails_cleanly(&stratbox(&["sign", "--secret", "not-a-secret", "--body", "{}"]), "whsec_");
}
