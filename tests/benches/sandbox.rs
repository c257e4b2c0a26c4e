//! What the sandbox's limits cost, and how well they hold:
//! 1. the SMA backtest with no limits, with a backtest's (per call) and with
//!    host mode's (per call and per minute);
//! 2. how soon the host regains control from a runaway call, in epoch ticks;
//! 3. the SMA's latency per bar in a host of its own, alone and beside each
//!    hostile strategy of `tests/hostile.rs`.
//!
//! `cargo bench -p stratbox-tests --bench sandbox`

use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use stratbox::broker::{Commission, PaperBroker};
use stratbox::engine::Engine;
use stratbox::risk::RiskLimits;
use stratbox::runtime::{Budget, Clock, Rates, Runtime, RuntimeConfig};
use stratbox::strategy::Strategy;
use stratbox_tests::MISBEHAVE_WASM;
use stratbox_tests::hostile::{CASES, Run, run_beside_the_sma};
use stratbox_tests::process::strategy;

/// Seconds to run `bars` through the SMA in batches of 1024.
fn backtest(runtime: &Runtime, budget: &Budget, bars: &[stratbox::bar::Bar]) -> anyhow::Result<f64> {
    let plugin = runtime.load_named("sma-crossover")?;
    let params = [("fast".to_string(), "5".to_string()), ("slow".to_string(), "20".to_string())];
    let strategy = runtime.instantiate_within(&plugin, &params, Clock::virtual_at(0), budget)?;
    let broker = Box::new(PaperBroker::new(Commission::default()));
    let mut engine = Engine::new(Box::new(strategy), broker, RiskLimits::default(), Decimal::from(1_000_000));
    let started = Instant::now();
    engine.run(bars, 1024)?;
    Ok(started.elapsed().as_secs_f64())
}

fn cost_of_limits() -> anyhow::Result<()> {
    let bars = stratbox::bench::synthetic_bars(1_000_000, "BENCH");
    let metered = Runtime::new(RuntimeConfig { max_instances: 4, ..RuntimeConfig::default() })?;
    let unmetered = Runtime::new(RuntimeConfig { max_instances: 4, unmetered: true, ..RuntimeConfig::default() })?;
    let per_call = Budget::default();
    let host_mode = Budget { per_minute: Some(Rates::default()), ..Budget::default() };
    let sides: [(&str, &Runtime, &Budget); 3] = [
        ("no limits", &unmetered, &per_call),
        ("backtest limits", &metered, &per_call),
        ("host-mode limits", &metered, &host_mode),
    ];
    for (_, runtime, budget) in sides {
        backtest(runtime, budget, &bars[..100_000])?; // warm-up
    }
    println!("## SMA backtest, 1,000,000 bars in batches of 1024 (M bars/s, alternating rounds)");
    let mut best = [0.0_f64; 3];
    for round in 1..=3 {
        let mut line = format!("round {round}:");
        for (i, (name, runtime, budget)) in sides.iter().enumerate() {
            let rate = bars.len() as f64 / backtest(runtime, budget, &bars)? / 1e6;
            best[i] = best[i].max(rate);
            line += &format!("  {name} {rate:.2}");
        }
        println!("{line}");
    }
    println!(
        "best: no limits {:.2}, backtest {:.2} ({:+.1}%), host mode {:.2} ({:+.1}%)",
        best[0],
        best[1],
        (best[1] / best[0] - 1.0) * 100.0,
        best[2],
        (best[2] / best[0] - 1.0) * 100.0
    );
    Ok(())
}

fn regaining_control() -> anyhow::Result<()> {
    const TICK: Duration = Duration::from_millis(5);
    let timeout = Duration::from_millis(50);
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 4,
        max_restarts: 1000,
        budget: Budget { call_timeout: timeout, ..Budget::default() },
        ..RuntimeConfig::default()
    })?;
    let plugin = runtime.load("misbehave", &std::fs::read(MISBEHAVE_WASM)?)?;
    let params = [("mode".to_string(), "loop".to_string())];
    let mut runaway = runtime.instantiate(&plugin, &params, Clock::virtual_at(0))?;
    let bars = stratbox::bench::synthetic_bars(1, "BENCH");
    let mut over: Vec<f64> = (0..40)
        .map(|_| {
            let started = Instant::now();
            let _ = runaway.on_bars(&bars); // interrupted, then restarted
            (started.elapsed().saturating_sub(timeout)).as_secs_f64() / TICK.as_secs_f64()
        })
        .collect();
    over.sort_by(f64::total_cmp);
    println!("## A runaway call with a 50 ms deadline (10 ticks of 5 ms), 40 calls");
    println!(
        "back in control after the deadline, in ticks (restart included): median {:.2}, p90 {:.2}, max {:.2}",
        over[over.len() / 2],
        over[over.len() * 9 / 10],
        over[over.len() - 1]
    );
    Ok(())
}

fn latency(run: &Run) -> String {
    let calm = strategy(&run.health, "calm").cloned().unwrap_or_default();
    let l = &calm["latency"];
    format!(
        "p50 {} µs, p99 {} µs, max {} µs; bars lost {}; host peak {} MiB",
        l["p50_us"],
        l["p99_us"],
        l["max_us"],
        calm["bars_dropped"],
        run.peak >> 20
    )
}

async fn neighbour_latency() {
    let binary = env!("CARGO_BIN_EXE_stratbox-under-test");
    println!("## The SMA's latency per bar (hand-over to done), replay of 3,270 bars at 1 ms");
    for round in 1..=2 {
        println!("calm, alone (round {round}): {}", latency(&run_beside_the_sma(binary, None).await));
    }
    for case in CASES {
        println!("beside {}: {}", case.name, latency(&run_beside_the_sma(binary, Some(*case)).await));
    }
}

fn main() -> anyhow::Result<()> {
    cost_of_limits()?;
    regaining_control()?;
    tokio::runtime::Runtime::new()?.block_on(neighbour_latency());
    Ok(())
}
