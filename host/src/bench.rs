//! `stratbox bench`: bars per second through the whole engine, for the
//! SMA crossover plugin and for the same rules compiled into the host.

use std::sync::Arc;
use std::time::Instant;

use rust_decimal::Decimal;
use sma_crossover::{Order, Qty, SmaCrossover};

use crate::bar::{Bar, Millis};
use crate::broker::{Commission, PaperBroker};
use crate::engine::{Engine, EngineError};
use crate::order::{Action, Fill, OrderIntent, Side};
use crate::risk::RiskLimits;
use crate::runtime::{Clock, Runtime, RuntimeConfig, RuntimeError};
use crate::strategy::{Account, Strategy, StrategyError};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the plugin and the native baseline disagree: {0}")]
    Mismatch(String),
}

/// One measured run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measurement {
    pub name: String,
    pub bars: usize,
    pub seconds: f64,
    pub bars_per_second: f64,
    pub fills: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub plugin: Measurement,
    pub native: Measurement,
    /// Plugin time over native time.
    pub ratio: f64,
    /// Mean time to instantiate the plugin from its `InstancePre` and run
    /// `init`, in microseconds.
    pub instantiate_us: f64,
}

/// A deterministic random walk of `n` one-minute bars, prices in cents.
pub fn synthetic_bars(n: usize, symbol: &str) -> Vec<Bar> {
    let symbol: Arc<str> = Arc::from(symbol);
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut cents: i64 = 10_000;
    (0..n)
        .map(|i| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let step = (state % 41) as i64 - 20;
            let open = cents;
            cents = (cents + step).max(100);
            let (lo, hi) = (open.min(cents), open.max(cents));
            Bar {
                symbol: symbol.clone(),
                time: 1_600_000_000_000 + i as Millis * 60_000,
                open: Decimal::new(open, 2),
                high: Decimal::new(hi + 3, 2),
                low: Decimal::new(lo - 3, 2),
                close: Decimal::new(cents, 2),
                volume: Decimal::from(1000 + (state % 500) as i64),
            }
        })
        .collect()
}

/// The SMA crossover rules from the plugin's crate, run natively.
pub struct NativeSma {
    rules: SmaCrossover,
    next_id: u64,
    pending: Vec<(u64, Order)>,
}

impl NativeSma {
    pub fn new(fast: usize, slow: usize, qty: i64) -> Result<Self, String> {
        let rules = SmaCrossover::new(fast, slow, Qty { mantissa: qty, scale: 0 }).map_err(|e| e.0)?;
        Ok(Self { rules, next_id: 1, pending: Vec::new() })
    }
}

impl Strategy for NativeSma {
    fn name(&self) -> &str {
        "native-sma"
    }

    fn on_bars(&mut self, bars: &[Bar]) -> Result<Vec<(usize, Action)>, StrategyError> {
        let mut actions = Vec::new();
        for (index, bar) in bars.iter().enumerate() {
            // The same conversion the plugin boundary makes.
            let close = match i64::try_from(bar.close.mantissa()) {
                Ok(m) => (m, bar.close.scale()),
                Err(_) => {
                    let n = bar.close.normalize();
                    (i64::try_from(n.mantissa()).unwrap_or(i64::MAX), n.scale())
                }
            };
            let fixed = sma_crossover::to_fixed(close.0, close.1 as u8);
            let Some(order) = self.rules.on_close(fixed) else { continue };
            let (side, qty) = match order {
                Order::Buy(q) => (Side::Buy, q),
                Order::Sell(q) => (Side::Sell, q),
            };
            let id = self.next_id;
            self.pending.push((id, order));
            self.next_id += 1;
            let intent =
                OrderIntent::market(bar.symbol.clone(), side, Decimal::new(qty.mantissa, u32::from(qty.scale)));
            actions.push((index, Action::Submit { id, intent }));
        }
        Ok(actions)
    }

    fn on_fill(&mut self, fill: &Fill) -> Result<Vec<Action>, StrategyError> {
        self.pending.retain(|(id, _)| *id != fill.intent_id.id);
        Ok(Vec::new())
    }

    fn on_reject(&mut self, order: u64, _: &str, _: &str) -> Result<Vec<Action>, StrategyError> {
        if let Some(at) = self.pending.iter().position(|(id, _)| *id == order) {
            let (_, order) = self.pending.remove(at);
            self.rules.on_rejected(order);
        }
        Ok(Vec::new())
    }

    fn on_signal(&mut self, _: &str, _: &str, _: Millis) -> Result<Vec<Action>, StrategyError> {
        Ok(Vec::new())
    }

    fn save_state(&mut self) -> Result<Vec<u8>, StrategyError> {
        Ok(self.rules.save())
    }

    fn load_state(&mut self, state: &[u8]) -> Result<(), StrategyError> {
        self.rules = SmaCrossover::load(state).map_err(|e| StrategyError::Refused {
            strategy: "native-sma".into(),
            call: "load-state",
            message: e.0,
        })?;
        Ok(())
    }

    fn set_position(&mut self, _: &Arc<str>, _: Decimal) {}

    fn set_account(&mut self, _: Account) {}
}

fn measure(
    name: &str,
    strategy: Box<dyn Strategy>,
    bars: &[Bar],
    batch: usize,
) -> Result<(Measurement, Vec<crate::report::FillRecord>), BenchError> {
    let risk = RiskLimits {
        max_position: Some(Decimal::from(1_000)),
        max_order_notional: Some(Decimal::from(10_000_000)),
        allowed_symbols: Some(vec!["BENCH".into()]),
    };
    let mut engine =
        Engine::new(strategy, Box::new(PaperBroker::new(Commission::default())), risk, Decimal::from(1_000_000));
    let start = Instant::now();
    engine.run(bars, batch)?;
    let seconds = start.elapsed().as_secs_f64();
    let report = engine.report("BENCH");
    let m = Measurement {
        name: name.into(),
        bars: bars.len(),
        seconds,
        bars_per_second: bars.len() as f64 / seconds,
        fills: report.fills.len() as u64,
    };
    Ok((m, report.fills))
}

/// Runs both measurements on the same bars, after a warm-up of each.
pub fn run(bars: usize, batch: usize) -> Result<BenchReport, BenchError> {
    let data = synthetic_bars(bars, "BENCH");
    let runtime = Runtime::new(RuntimeConfig { max_restarts: 0, ..RuntimeConfig::default() })?;
    let plugin = runtime.load_named("sma-crossover")?;
    let params = [("fast".to_string(), "5".to_string()), ("slow".to_string(), "20".to_string())];
    let wasm = || runtime.instantiate(&plugin, &params, Clock::virtual_at(0));
    let native = || NativeSma::new(5, 20, 1).map_err(BenchError::Mismatch);

    let warm = &data[..data.len().min(50_000)];
    measure("warm-up", Box::new(wasm()?), warm, batch)?;
    measure("warm-up", Box::new(native()?), warm, batch)?;

    let (plugin_m, plugin_fills) = measure("sma-crossover.wasm", Box::new(wasm()?), &data, batch)?;
    let (native_m, native_fills) = measure("native (same rules)", Box::new(native()?), &data, batch)?;
    if plugin_fills != native_fills {
        return Err(BenchError::Mismatch(format!(
            "{} plugin fills vs {} native fills",
            plugin_fills.len(),
            native_fills.len()
        )));
    }
    let ratio = plugin_m.seconds / native_m.seconds;

    const INSTANCES: u32 = 1000;
    let start = Instant::now();
    for _ in 0..INSTANCES {
        drop(wasm()?);
    }
    let instantiate_us = start.elapsed().as_secs_f64() * 1e6 / f64::from(INSTANCES);
    Ok(BenchReport { plugin: plugin_m, native: native_m, ratio, instantiate_us })
}
