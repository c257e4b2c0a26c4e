//! Bars per second through the engine, the Python SMA crossover against the
//! Rust one, at one bar per call and at 1,000: the two batch sizes split
//! the time into a cost per call and a cost per bar.
//!
//! `cargo bench -p stratbox-tests --bench python`

use std::sync::Arc;
use std::time::Instant;

use rust_decimal::Decimal;
use stratbox::bar::Bar;
use stratbox::broker::{Commission, PaperBroker};
use stratbox::engine::Engine;
use stratbox::risk::RiskLimits;
use stratbox::runtime::{Clock, Plugin, Runtime, RuntimeConfig};

fn measure(runtime: &Runtime, plugin: &Arc<Plugin>, bars: &[Bar], batch: usize) -> (f64, usize) {
    let params = [("fast".to_string(), "5".to_string()), ("slow".to_string(), "20".to_string())];
    let strategy = runtime.instantiate(plugin, &params, Clock::virtual_at(0)).expect("the plugin starts");
    let risk = RiskLimits {
        max_position: Some(Decimal::from(1_000)),
        max_order_notional: Some(Decimal::from(10_000_000)),
        allowed_symbols: Some(vec!["BENCH".into()]),
    };
    let broker = Box::new(PaperBroker::new(Commission::default()));
    let mut engine = Engine::new(Box::new(strategy), broker, risk, Decimal::from(1_000_000));
    let started = Instant::now();
    engine.run(bars, batch).expect("the plugin runs");
    (started.elapsed().as_secs_f64(), engine.report("BENCH").fills.len())
}

fn main() -> anyhow::Result<()> {
    let python = stratbox_tests::python::build_guest("sma-crossover-py")?;
    let runtime = Runtime::new(RuntimeConfig { max_instances: 4, ..RuntimeConfig::default() })?;
    let python = runtime.load("python", &std::fs::read(python)?)?;
    let rust = runtime.load("rust", &std::fs::read(stratbox_tests::SMA_CROSSOVER_WASM)?)?;
    for (count, batch) in [(20_000, 1), (200_000, 1000)] {
        let bars = stratbox::bench::synthetic_bars(count, "BENCH");
        measure(&runtime, &python, &bars[..count / 10], batch); // warm-up
        let (py_secs, py_fills) = measure(&runtime, &python, &bars, batch);
        let (rs_secs, rs_fills) = measure(&runtime, &rust, &bars, batch);
        anyhow::ensure!(py_fills == rs_fills, "{py_fills} Python fills against {rs_fills} Rust ones");
        let calls = count.div_ceil(batch) as f64;
        println!(
            "batch {batch:>4}: python {:>9.0} bars/s ({:.1} µs a call), rust {:>9.0} bars/s ({:.1} µs a call); {py_fills} fills",
            count as f64 / py_secs,
            py_secs * 1e6 / calls,
            count as f64 / rs_secs,
            rs_secs * 1e6 / calls,
        );
    }
    Ok(())
}
