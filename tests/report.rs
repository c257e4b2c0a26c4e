//! `backtest --report`: the IBM backtest's page and charts, checked by an
//! independent reading: numpy recomputes the statistics from the bars and
//! the fills alone, Python's HTML parser reads the page and its XML parser
//! the SVG.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use stratbox_tests::{cli, data};

/// The numpy release the reference is written against.
const NUMPY: &str = "numpy==2.4.6";

fn close(a: f64, b: f64, what: &str) {
    assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{what}: {a} against the reference {b}");
}

#[test]
fn the_ibm_report_matches_an_independent_reference() {
    let dir = tempfile::tempdir().unwrap();
    let (page, charts) = (dir.path().join("ibm.html"), dir.path().join("ibm.svg"));
    let bars = data("IBM.csv");
    let run = |report: &Path| {
        let args = ["backtest", "--strategy", "sma-crossover", "--data", bars.to_str().unwrap(), "--format", "json"];
        let (result, out) = cli(&[&args[..], &["--report", report.to_str().unwrap()]].concat());
        result.unwrap();
        out
    };
    let json = run(&page);
    assert_eq!(run(&charts), json, "the same run, whatever the report's form");
    let report_path = dir.path().join("report.json");
    std::fs::write(&report_path, &json).unwrap();
    let report: Value = serde_json::from_str(&json).unwrap();
    let stats = &report["statistics"];

    let numpy = stratbox_tests::python::pip_install(NUMPY).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("report_reference.py");
    let output = Command::new("python3")
        .arg(&script)
        .args([&bars, &report_path, &page, &charts])
        .env("PYTHONPATH", &numpy)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let check: Value = serde_json::from_slice(&output.stdout).unwrap();
    let reference = &check["reference"];
    for key in ["total_return", "annual_return", "sharpe", "sortino", "win_rate", "profit_factor", "exposure"] {
        close(stats[key].as_f64().unwrap(), reference[key].as_f64().unwrap(), key);
    }
    assert_eq!(stats["trades"], reference["trades"]);
    assert!(reference["trades"].as_u64().unwrap() > 50, "enough trades to mean something");

    // The page: well formed, one inline SVG, the table shows the numbers.
    let summary = &check["summary"];
    assert_eq!(check["inline_svgs"], 1);
    assert_eq!(check["trade_rows"], reference["trades"]);
    let shown = |label: &str| summary[label].as_str().unwrap_or_default().to_string();
    assert_eq!(shown("Sharpe ratio"), format!("{:.3}", reference["sharpe"].as_f64().unwrap()));
    assert_eq!(shown("Win rate"), format!("{:.2}%", reference["win_rate"].as_f64().unwrap() * 100.0));
    assert_eq!(shown("Bars"), "3270");

    // The charts: equity (blue), drawdown (red) and price (black) lines,
    // a marker for each buy, the panels' captions.
    let strokes = &check["svg_strokes"];
    assert!(strokes["#0000FF"].as_u64() >= Some(1) && strokes["#FF0000"].as_u64() >= Some(1), "{strokes}");
    let buys = report["fills"].as_array().unwrap().iter().filter(|f| f["side"] == "buy").count() as u64;
    assert_eq!(check["svg_polygons"].as_u64(), Some(buys + 1), "one triangle a buy, and the drawdown's area");
    let texts = check["svg_texts"].to_string();
    for caption in ["Equity", "Drawdown (%)", "IBM price, buys and sells"] {
        assert!(texts.contains(caption), "{caption}: {texts}");
    }
}

#[test]
fn a_report_path_of_another_kind_is_refused_before_the_run() {
    let bars = data("IBM.csv");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.pdf");
    let (result, out) = cli(&[
        "backtest",
        "--strategy",
        "sma-crossover",
        "--data",
        bars.to_str().unwrap(),
        "--report",
        path.to_str().unwrap(),
    ]);
    let error = result.unwrap_err().to_string();
    assert!(error.contains(".html") && error.contains(".svg"), "{error}");
    assert!(out.is_empty() && !path.exists());
}
