//! The tape: each symbol's closes as the feed delivers them, and the host's
//! PnL (every instance's realized plus unrealized) at each batch, for the
//! dashboard's charts.
//!
//! Bounded however long the host runs: a series keeps at most [`POINTS`]
//! points. When full it drops every other point and from then on keeps one
//! input in two (then four, ...), so it always spans the whole run at a
//! coarser grain, and its newest input is always shown.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Serialize;

use crate::bar::{Bar, Millis};
use crate::engine::HostStatus;

/// Points kept per series.
pub const POINTS: usize = 1_000;

/// Symbols followed; later ones are not drawn.
pub const SYMBOLS: usize = 64;

/// One series, thinned as it grows.
#[derive(Debug, Default, Clone)]
struct Series {
    points: Vec<(Millis, f64)>,
    /// The newest input not kept as a point (yet).
    tail: Option<(Millis, f64)>,
    /// One input in `stride` is kept.
    stride: u64,
    seen: u64,
}

impl Series {
    fn push(&mut self, time: Millis, value: f64) {
        if !value.is_finite() {
            return;
        }
        let stride = self.stride.max(1);
        self.seen += 1;
        if !self.seen.is_multiple_of(stride) {
            self.tail = Some((time, value));
            return;
        }
        self.tail = None;
        self.points.push((time, value));
        if self.points.len() >= POINTS {
            let mut keep = 0;
            self.points.retain(|_| {
                keep += 1;
                keep % 2 == 1
            });
            self.stride = stride * 2;
        }
    }

    fn view(&self) -> Vec<(Millis, f64)> {
        self.points.iter().copied().chain(self.tail).collect()
    }
}

/// What the charts draw: time (ms since the epoch) and value pairs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Charts {
    /// The sum of every instance's PnL, at each batch's time.
    pub pnl: Vec<(Millis, f64)>,
    /// Each symbol's closes.
    pub prices: BTreeMap<String, Vec<(Millis, f64)>>,
}

#[derive(Debug, Default)]
pub struct Tape {
    series: Mutex<(Series, BTreeMap<String, Series>)>,
}

impl Tape {
    /// Records `batch`'s closes, and the PnL `status` shows now, at its time.
    pub fn record(&self, batch: &[Bar], status: &std::sync::RwLock<HostStatus>) {
        let Some(time) = batch.iter().map(|b| b.time).max() else { return };
        let pnl = status.read().ok().map(|s| total_pnl(&s));
        let mut series = self.series.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (pnl_series, prices) = &mut *series;
        if let Some(pnl) = pnl.and_then(|p| p.to_f64()) {
            pnl_series.push(time, pnl);
        }
        for bar in batch {
            let Some(close) = bar.close.to_f64() else { continue };
            if !prices.contains_key(&*bar.symbol) && prices.len() < SYMBOLS {
                prices.insert(bar.symbol.to_string(), Series::default());
            }
            if let Some(series) = prices.get_mut(&*bar.symbol) {
                series.push(bar.time, close);
            }
        }
    }

    /// The series so far. The engines finish a batch after the feed hands
    /// it over, so the PnL recorded with the newest batch trails them: its
    /// newest point shows `status`'s PnL now instead.
    pub fn charts(&self, status: &HostStatus) -> Charts {
        let series = self.series.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (pnl, prices) = &*series;
        let mut pnl = pnl.view();
        if let (Some(last), Some(now)) = (pnl.last_mut(), total_pnl(status).to_f64()) {
            last.1 = now;
        }
        Charts { pnl, prices: prices.iter().map(|(s, series)| (s.clone(), series.view())).collect() }
    }
}

/// Every instance's realized plus unrealized PnL.
fn total_pnl(status: &HostStatus) -> Decimal {
    let parse = |text: &str| text.parse::<Decimal>().unwrap_or_default();
    status.strategies.iter().map(|i| parse(&i.realized_pnl) + parse(&i.unrealized_pnl)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_series_stays_bounded_and_spans_the_run() {
        let mut series = Series::default();
        for i in 0..100_000 {
            series.push(i, i as f64);
        }
        let view = series.view();
        assert!(view.len() <= POINTS + 1, "{}", view.len());
        assert!(view.len() > POINTS / 4, "{}", view.len());
        assert_eq!(view.first().map(|p| p.0), Some(0), "the start is kept");
        assert_eq!(view.last().map(|p| p.0), Some(99_999), "the newest is shown");
        assert!(view.windows(2).all(|w| w[0].0 < w[1].0));
        series.push(100_000, f64::NAN);
        assert_eq!(series.view().last().map(|p| p.0), Some(99_999));
    }

    #[test]
    fn closes_and_pnl_are_recorded_per_batch() {
        let tape = Tape::default();
        let status = std::sync::RwLock::new(HostStatus::default());
        status.write().unwrap().set(crate::engine::StrategyStatus {
            name: "a".into(),
            realized_pnl: "10.5".into(),
            unrealized_pnl: "-0.5".into(),
            ..Default::default()
        });
        let bar = |symbol: &str, time, close: i64| Bar {
            symbol: symbol.into(),
            time,
            open: close.into(),
            high: close.into(),
            low: close.into(),
            close: close.into(),
            volume: 1.into(),
        };
        tape.record(&[bar("IBM", 60, 100), bar("MSFT", 60, 200)], &status);
        tape.record(&[bar("IBM", 120, 101)], &status);
        let charts = tape.charts(&status.read().unwrap());
        assert_eq!(charts.pnl, vec![(60, 10.0), (120, 10.0)]);
        // The newest point follows the engines, which finish after the feed.
        status.write().unwrap().strategies[0].realized_pnl = "12".into();
        assert_eq!(tape.charts(&status.read().unwrap()).pnl, vec![(60, 10.0), (120, 11.5)]);
        assert_eq!(charts.prices["IBM"], vec![(60, 100.0), (120, 101.0)]);
        assert_eq!(charts.prices["MSFT"], vec![(60, 200.0)]);
    }
}
