//! The SMA crossover strategy written in Python (`plugins/sma-crossover-py`),
//! built with componentize-py and run through the real host: it must trade
//! exactly as the Rust plugin does.
//!
//! The component is 18 MB and takes Cranelift several seconds to compile, so
//! the tests share one runtime with both plugins loaded.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use rust_decimal::Decimal;
use stratbox::bar::{Bar, format_time};
use stratbox::broker::{Commission, PaperBroker};
use stratbox::engine::Engine;
use stratbox::feed::{CsvLimits, load_csv, load_source};
use stratbox::report::{FillRecord, Report};
use stratbox::risk::RiskLimits;
use stratbox::runtime::{Budget, Clock, Plugin, Runtime, RuntimeConfig};
use stratbox::strategy::Strategy;
use stratbox_tests::{PATIENCE, SMA_CROSSOVER_WASM, cli, data};

const SYMBOLS: [&str; 4] = ["IBM", "AAPL", "MSFT", "GOOG"];

/// The Python component, built once per test process (and cached across
/// runs in the target directory).
fn python_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| stratbox_tests::python::build_guest("sma-crossover-py").expect("building the Python guest"))
}

struct Plugins {
    runtime: Runtime,
    python: Arc<Plugin>,
    rust: Arc<Plugin>,
}

fn plugins() -> &'static Plugins {
    static PLUGINS: OnceLock<Plugins> = OnceLock::new();
    PLUGINS.get_or_init(|| {
        let runtime = Runtime::new(RuntimeConfig {
            max_restarts: 0,
            max_instances: 32,
            budget: Budget { call_timeout: PATIENCE, ..Default::default() },
            ..Default::default()
        })
        .unwrap();
        let started = Instant::now();
        let path = python_wasm();
        let python = runtime.load(&path.display().to_string(), &std::fs::read(path).unwrap()).unwrap();
        eprintln!("loaded the Python guest in {:.1} s", started.elapsed().as_secs_f64());
        let rust = runtime.load("sma-crossover", &std::fs::read(SMA_CROSSOVER_WASM).unwrap()).unwrap();
        Plugins { runtime, python, rust }
    })
}

fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn start(plugin: &Arc<Plugin>, params: &[(String, String)]) -> Box<dyn Strategy> {
    Box::new(plugins().runtime.instantiate(plugin, params, Clock::virtual_at(0)).unwrap())
}

fn engine(strategy: Box<dyn Strategy>) -> Engine {
    Engine::new(
        strategy,
        Box::new(PaperBroker::new(Commission::default())),
        RiskLimits::default(),
        Decimal::from(100_000),
    )
}

fn run(plugin: &Arc<Plugin>, params: &[(String, String)], bars: &[Bar], batch: usize) -> Report {
    let mut engine = engine(start(plugin, params));
    engine.run(bars, batch).unwrap();
    engine.report(&bars[0].symbol)
}

/// What must match: when, which way, how much, at what price.
fn trades(report: &Report) -> Vec<(String, stratbox::order::Side, Decimal, Decimal)> {
    report.fills.iter().map(|f: &FillRecord| (f.time.clone(), f.side, f.qty, f.price)).collect()
}

fn assert_same_fills(bars: &[Bar], pairs: &[(&str, &str)], batch: usize) {
    let params = params(pairs);
    let p = plugins();
    let rust = run(&p.rust, &params, bars, batch);
    let python = run(&p.python, &params, bars, batch);
    assert!(rust.fills.len() > 20, "{}: the Rust plugin should trade, made {} fills", bars[0].symbol, rust.fills.len());
    assert_eq!(trades(&python), trades(&rust), "{} {pairs:?} batch {batch}: fills differ", bars[0].symbol);
    assert_eq!(python.final_position, rust.final_position);
    assert_eq!(python.realized_pnl, rust.realized_pnl);
}

#[test]
fn trades_as_the_rust_plugin_on_the_bundled_data() {
    for symbol in SYMBOLS {
        let bars =
            load_source(&format!("bundled:{symbol}"), symbol, CsvLimits::default(), &Default::default()).unwrap();
        assert_same_fills(&bars, &[], 256);
    }
}

/// `data/*.csv` are the files the bundled data is built from, and the same
/// as the shared data set (`shared/data`).
#[test]
fn trades_as_the_rust_plugin_on_the_csv_files() {
    for symbol in SYMBOLS {
        let bars = load_csv(&data(&format!("{symbol}.csv")), symbol, CsvLimits::default()).unwrap();
        assert_same_fills(&bars, &[], 256);
    }
}

#[test]
fn trades_as_the_rust_plugin_with_other_parameters_and_batches() {
    let aapl = load_csv(&data("AAPL.csv"), "AAPL", CsvLimits::default()).unwrap();
    let msft = load_csv(&data("MSFT.csv"), "MSFT", CsvLimits::default()).unwrap();
    assert_same_fills(&aapl, &[("fast", "3"), ("slow", "10"), ("qty", "2.5")], 1);
    assert_same_fills(&msft, &[("fast", "12"), ("slow", "26"), ("qty", "0.001")], 1000);
    assert_same_fills(&msft, &[], 7);
}

/// Bars of two symbols in one batch exercise the per-batch symbol table and
/// per-symbol price scales.
#[test]
fn trades_as_the_rust_plugin_with_two_symbols_per_batch() {
    let mut bars = load_csv(&data("IBM.csv"), "IBM", CsvLimits::default()).unwrap();
    bars.extend(load_csv(&data("GOOG.csv"), "GOOG", CsvLimits::default()).unwrap());
    bars.sort_by_key(|b| b.time);
    assert_same_fills(&bars, &[], 100);
}

#[test]
fn state_saved_mid_run_resumes_identically() {
    let p = plugins();
    let bars = load_csv(&data("AAPL.csv"), "AAPL", CsvLimits::default()).unwrap();
    let params = params(&[("fast", "4"), ("slow", "15")]);
    let whole = run(&p.python, &params, &bars, 50);
    assert_eq!(trades(&whole), trades(&run(&p.rust, &params, &bars, 50)));

    // Split just after a fill, where no order is in flight.
    let fill_bars: Vec<usize> =
        whole.fills.iter().map(|f| bars.iter().position(|b| format_time(b.time) == f.time).unwrap()).collect();
    let split = fill_bars.windows(2).find(|w| w[0] > 1000 && w[1] > w[0] + 2).map(|w| w[0] + 1).unwrap();

    let mut first = engine(start(&p.python, &params));
    first.run(&bars[..split], 50).unwrap();
    let state = first.strategy_mut().save_state().unwrap();

    let mut second = start(&p.python, &params);
    second.load_state(&state).unwrap();
    assert_eq!(second.save_state().unwrap(), state, "restore then save-state round-trips exactly");
    let refused = second.load_state(b"garbage").expect_err("a corrupt state is refused").to_string();
    assert!(refused.contains("incompatible state"), "{refused}");
    second.load_state(&state).unwrap();

    let mut resumed = engine(second);
    resumed.run(&bars[split..], 50).unwrap();
    let after_split: Vec<_> =
        trades(&whole).into_iter().filter(|(time, ..)| *time >= format_time(bars[split].time)).collect();
    let got = trades(&resumed.report("AAPL"));
    assert!(!got.is_empty());
    assert_eq!(got, after_split);
}

/// A hot swap through save-state and restore while an order is in flight:
/// the restored instance continues the order ids and hears the fill of the
/// order its predecessor placed.
#[test]
fn restores_with_orders_in_flight() {
    let p = plugins();
    let bars = load_csv(&data("MSFT.csv"), "MSFT", CsvLimits::default()).unwrap();
    let params = params(&[]);
    let whole = run(&p.python, &params, &bars, 64);
    // A market order fills at the open of the bar after the one that placed
    // it: swapping just before a fill's bar leaves that order in flight.
    let mut splits: Vec<usize> =
        whole.fills.iter().map(|f| bars.iter().position(|b| format_time(b.time) == f.time).unwrap()).collect();
    splits.retain(|&at| at > 300);
    splits.truncate(6);
    splits.extend([1500, 2500]);
    splits.sort();

    let mut engine = engine(start(&p.python, &params));
    let mut from = 0;
    for &split in &splits {
        engine.run(&bars[from..split], 64).unwrap();
        let state = engine.strategy_mut().save_state().unwrap();
        let mut restored = start(&p.python, &params);
        restored.load_state(&state).unwrap();
        drop(engine.replace_strategy(restored, true));
        from = split;
    }
    engine.run(&bars[from..], 64).unwrap();
    assert_eq!(trades(&engine.report("MSFT")), trades(&whole));
}

#[test]
fn the_cli_backtests_it_as_the_rust_plugin() {
    let path = data("IBM.csv");
    let run = |strategy: &str| {
        let (result, out) =
            cli(&["backtest", "--strategy", strategy, "--data", path.to_str().unwrap(), "--format", "json"]);
        result.unwrap();
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let python = run(python_wasm().to_str().unwrap());
    let rust = run(SMA_CROSSOVER_WASM);
    assert_eq!(python["bars"], 3270);
    assert_eq!(python["fills"], rust["fills"]);
    assert_eq!(python["realized_pnl"], rust["realized_pnl"]);
}

/// The component exports the 0.2 strategy interface and imports nothing
/// but the contract: `--stub-wasi` leaves no WASI import behind.
#[test]
fn imports_only_the_contract() {
    let bytes = std::fs::read(python_wasm()).unwrap();
    let wit_component::DecodedWasm::Component(resolve, world) = wit_component::decode(&bytes).unwrap() else {
        panic!("not a component");
    };
    let world = &resolve.worlds[world];
    let name = |key: &wit_parser::WorldKey| resolve.name_world_key(key);
    let imports: Vec<String> = world.imports.keys().map(name).collect();
    let exports: Vec<String> = world.exports.keys().map(name).collect();
    assert!(exports.contains(&"stratbox:strategy/strategy@0.2.0".to_string()), "exports {exports:?}");
    assert!(imports.iter().all(|i| i.starts_with("stratbox:strategy/")), "imports {imports:?}");
    let info = &plugins().python.info;
    assert_eq!(info.name, "sma-crossover-py");
    let keys: Vec<&str> = info.params.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(keys, ["fast", "slow", "qty"]);
    // `plugin inspect` starts it too: its pool has room for 38 core instances.
    let (inspected, out) = cli(&["plugin", "inspect", python_wasm().to_str().unwrap()]);
    assert_eq!(inspected.unwrap(), std::process::ExitCode::SUCCESS, "{out}");
    assert!(out.contains("plugin:    sma-crossover-py") && out.contains("satisfies stratbox:strategy@0.2.0: yes"));
}

#[test]
fn refuses_bad_parameters_as_the_rust_plugin_does() {
    let p = plugins();
    for (key, value) in [("fast", "0"), ("fast", "20"), ("slow", "10001"), ("qty", "0"), ("qty", "-1")] {
        let params = params(&[(key, value)]);
        let refusal = |plugin| match p.runtime.instantiate(plugin, &params, Clock::virtual_at(0)) {
            Ok(_) => panic!("{key}={value} accepted by {}", plugin.label),
            Err(e) => e.to_string(),
        };
        let python = refusal(&p.python);
        assert!(python.contains(&format!("invalid parameter `{key}`")), "{key}={value}: {python}");
        refusal(&p.rust);
    }
}

/// The rules' own unit tests, under the machine's CPython.
#[test]
fn python_unit_tests_pass() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sma-crossover-py");
    let out = std::process::Command::new("python3")
        .args(["-m", "unittest"])
        .current_dir(dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "python3 -m unittest: {}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
}

/// A Python instance (38 core instances, two tables, one memory) fits the
/// host's pool when it has room for one strategy only: the pool's quota per
/// store is sized for componentize-py, not just for Rust guests.
#[test]
fn one_python_instance_fits_the_tightest_pool() {
    let runtime = Runtime::new(RuntimeConfig { max_instances: 1, ..RuntimeConfig::default() }).unwrap();
    let plugin = runtime.load("python", &std::fs::read(python_wasm()).unwrap()).unwrap();
    let mut strategy = runtime.instantiate(&plugin, &[], Clock::virtual_at(0)).unwrap();
    let bars = stratbox::bench::synthetic_bars(100, "BENCH");
    strategy.on_bars(&bars).unwrap();
}
