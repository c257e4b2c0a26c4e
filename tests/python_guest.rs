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
use stratbox::runtime::{Clock, Plugin, Runtime, RuntimeConfig};
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
            call_timeout: PATIENCE,
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
        let bars = load_source(&format!("bundled:{symbol}"), symbol, CsvLimits::default()).unwrap();
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

/// What one instance takes from a pooling allocator, as wasmtime counts it,
/// for sizing the host's `PoolingAllocationConfig`. It compiles the
/// component once more, so it runs on request:
/// `cargo test -p stratbox-tests --test python_guest -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement; run it to size the pooling allocator"]
fn pooling_allocator_needs() {
    use wasmtime::component::{Component, Linker};
    use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

    let bytes = std::fs::read(python_wasm()).unwrap();
    let generous = || {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(2)
            .total_core_instances(1000)
            .total_memories(8)
            .total_tables(16)
            .total_stacks(2)
            .max_memory_size(256 << 20)
            .table_elements(1 << 20);
        pool
    };
    let mut config = Config::new();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(generous()));
    let started = Instant::now();
    let compiled = Component::new(&Engine::new(&config).unwrap(), &bytes).unwrap().serialize().unwrap();
    eprintln!(
        "compiled in {:.1} s: {} bytes of machine code and metadata",
        started.elapsed().as_secs_f64(),
        compiled.len()
    );

    // Each limit set to 0 in turn: wasmtime's refusal names the count.
    let refusal = |tighten: fn(&mut PoolingAllocationConfig)| -> String {
        let mut pool = generous();
        tighten(&mut pool);
        let mut config = Config::new();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).unwrap();
        // SAFETY: the bytes were serialized just above by this same wasmtime.
        let instantiated = unsafe { Component::deserialize(&engine, &compiled) }.and_then(|component| {
            let mut linker = Linker::<()>::new(&engine);
            linker.define_unknown_imports_as_traps(&component)?;
            linker.instantiate(&mut Store::new(&engine, ()), &component)
        });
        match instantiated {
            Ok(_) => "fits".into(),
            Err(e) => format!("{e:#}"),
        }
    };
    assert_eq!(refusal(|_| {}), "fits");
    for (what, tighten) in [
        ("core instances", (|p| _ = p.max_core_instances_per_component(0)) as fn(&mut PoolingAllocationConfig)),
        ("memories", |p| _ = p.max_memories_per_component(0)),
        ("tables", |p| _ = p.max_tables_per_component(0)),
        ("table elements", |p| _ = p.table_elements(0)),
        ("memory size", |p| _ = p.max_memory_size(0)),
        ("core instance size", |p| _ = p.max_core_instance_size(0)),
        ("component instance size", |p| _ = p.max_component_instance_size(0)),
    ] {
        eprintln!("{what}: {}", refusal(tighten));
    }
}

/// Bars per second through the engine, as `stratbox bench` measures the
/// bundled plugin (which takes no plugin path): the Python guest against the
/// Rust one, one bar per call and 1000. The difference between the two
/// batch sizes splits the time into a cost per call and a cost per bar.
/// `cargo test -p stratbox-tests --test python_guest -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement; run it for the numbers"]
fn bars_per_second() {
    let p = plugins();
    let params = params(&[("fast", "5"), ("slow", "20")]);
    let measure = |plugin: &Arc<Plugin>, bars: &[Bar], batch: usize| {
        let risk = RiskLimits {
            max_position: Some(Decimal::from(1_000)),
            max_order_notional: Some(Decimal::from(10_000_000)),
            allowed_symbols: Some(vec!["BENCH".into()]),
        };
        let mut engine = Engine::new(
            start(plugin, &params),
            Box::new(PaperBroker::new(Commission::default())),
            risk,
            Decimal::from(1_000_000),
        );
        let started = Instant::now();
        engine.run(bars, batch).unwrap();
        (started.elapsed().as_secs_f64(), trades(&engine.report("BENCH")))
    };
    for (count, batch) in [(20_000, 1), (200_000, 1000)] {
        let bars = stratbox::bench::synthetic_bars(count, "BENCH");
        measure(&p.python, &bars[..count / 10], batch); // warm-up
        let (python, python_fills) = measure(&p.python, &bars, batch);
        let (rust, rust_fills) = measure(&p.rust, &bars, batch);
        assert_eq!(python_fills, rust_fills);
        let calls = count.div_ceil(batch) as f64;
        eprintln!(
            "batch {batch:>4}: python {:>9.0} bars/s ({:.1} µs per call), rust {:>9.0} bars/s ({:.1} µs per call); {} fills",
            count as f64 / python,
            python * 1e6 / calls,
            count as f64 / rust,
            rust * 1e6 / calls,
            python_fills.len()
        );
    }
}
