//! Parameter sweeps: every combination of a grid backtested on the same
//! bars, on every core, and a table of the results sorted by a metric.
//!
//! The bars are parsed once and shared read-only; the plugin is compiled
//! once and each combination gets its own store and instance from the same
//! pre-linked component, on one of `jobs` threads. Each backtest is
//! deterministic and the table is sorted by the metric and then by the
//! combination's number, so it is the same whatever `jobs` is. A sweep
//! may run one shard of the grid (`I/N`), for a cluster's indexed job, and
//! [`merge`] joins the shards' tables into the one a whole run writes.

mod grid;
mod table;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rust_decimal::Decimal;

pub use self::grid::{Axis, Grid, GridError, MAX_COMBINATIONS, Shard};
pub use self::table::{Metric, Row, Stats, TableError, merge, read_table, write_table};
use crate::bar::Bar;
use crate::broker::PaperBroker;
use crate::config::BrokerConfig;
use crate::engine::{Engine, EngineError};
use crate::risk::RiskLimits;
use crate::runtime::{Clock, Plugin, Runtime, RuntimeError};

/// Why a sweep stopped.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Grid(#[from] GridError),
    #[error("combination {index} ({params}): {source}")]
    Start { index: usize, params: String, source: RuntimeError },
    #[error("combination {index} ({params}): {source}")]
    Run { index: usize, params: String, source: EngineError },
    #[error("no bars to sweep over")]
    NoBars,
}

/// What every combination shares.
pub struct Sweep<'a> {
    pub runtime: &'a Runtime,
    pub plugin: Arc<Plugin>,
    /// Parameters every combination has, besides the grid's.
    pub fixed: Vec<(String, String)>,
    pub grid: Grid,
    pub shard: Shard,
    pub jobs: usize,
    /// Bars per strategy call.
    pub batch: usize,
    pub risk: RiskLimits,
    pub broker: BrokerConfig,
}

impl Sweep<'_> {
    /// Backtests this shard's combinations over `bars` and returns their
    /// rows sorted best first by `metric`.
    pub fn run(&self, bars: &[Bar], metric: Metric) -> Result<Vec<Row>, SweepError> {
        let first = bars.first().ok_or(SweepError::NoBars)?;
        let first_time = first.time;
        let symbol = first.symbol.to_string();
        let mine: Vec<usize> = (0..self.grid.len()).filter(|&i| self.shard.takes(i)).collect();
        let next = AtomicUsize::new(0);
        let rows = Mutex::new(Vec::with_capacity(mine.len()));
        let failure: Mutex<Option<SweepError>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..self.jobs.clamp(1, mine.len().max(1)) {
                scope.spawn(|| {
                    loop {
                        let at = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&index) = mine.get(at) else { break };
                        if failure.lock().is_ok_and(|f| f.is_some()) {
                            break;
                        }
                        match self.one(index, bars, first_time, &symbol) {
                            Ok(row) => rows.lock().unwrap_or_else(|p| p.into_inner()).push(row),
                            Err(error) => {
                                let mut failure = failure.lock().unwrap_or_else(|p| p.into_inner());
                                // The lowest-numbered failure, whatever the timing.
                                let earlier = match failure.as_ref() {
                                    Some(SweepError::Start { index: i, .. } | SweepError::Run { index: i, .. }) => {
                                        *i > index
                                    }
                                    _ => true,
                                };
                                if earlier {
                                    *failure = Some(error);
                                }
                                break;
                            }
                        }
                    }
                });
            }
        });
        if let Some(error) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(error);
        }
        let mut rows = rows.into_inner().unwrap_or_else(|p| p.into_inner());
        table::sort(&mut rows, metric);
        Ok(rows)
    }

    /// Backtests combination `index`.
    fn one(&self, index: usize, bars: &[Bar], first_time: i64, symbol: &str) -> Result<Row, SweepError> {
        let varied = self.grid.combination(index);
        let mut params = self.fixed.clone();
        params.extend(varied.iter().cloned());
        let named =
            || crate::runtime::bounded(&varied.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "));
        let instance = self
            .runtime
            .instantiate(&self.plugin, &params, Clock::virtual_at(first_time))
            .map_err(|source| SweepError::Start { index, params: named(), source })?;
        let BrokerConfig { starting_cash, commission, .. } = self.broker.clone();
        let broker = Box::new(PaperBroker::new(commission));
        let mut engine = Engine::new(Box::new(instance), broker, self.risk.clone(), starting_cash);
        engine.run(bars, self.batch).map_err(|source| SweepError::Run { index, params: named(), source })?;
        let report = engine.report(symbol);
        let return_pct = if starting_cash.is_zero() {
            Decimal::ZERO
        } else {
            ((report.final_equity - starting_cash) / starting_cash * Decimal::ONE_HUNDRED).round_dp(6)
        };
        Ok(Row {
            index,
            params: varied,
            stats: Stats {
                bars: report.bars,
                orders: report.orders,
                fills: report.fills.len() as u64,
                realized_pnl: report.realized_pnl,
                unrealized_pnl: report.unrealized_pnl,
                commission: report.commission,
                max_drawdown: report.max_drawdown,
                max_drawdown_pct: report.max_drawdown_pct,
                final_equity: report.final_equity,
                return_pct,
            },
        })
    }
}
