//! What a backtest's charts and statistics need, recorded bar by bar in
//! bounded memory: the equity at each UTC day's last bar (for returns),
//! how many bars held a position (exposure), and a thinned series of
//! equity and one symbol's price (for charts).

use std::sync::Arc;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::bar::{Bar, Millis};

/// Points kept for charts: when twice this many are held, every other
/// one is dropped and the stride doubles.
const CHART_POINTS: usize = 2_000;
const DAY: Millis = 86_400_000;

/// One point of the charts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub time: Millis,
    pub equity: f64,
    /// The charted symbol's last close, once it has one.
    pub price: Option<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct Curve {
    /// The symbol whose price is charted: the first seen.
    symbol: Option<Arc<str>>,
    price: Option<f64>,
    points: Vec<Point>,
    stride: u64,
    bars: u64,
    exposed: u64,
    /// Equity at the last bar of each UTC day that had bars.
    days: Vec<(Millis, f64)>,
    last: Option<Point>,
    first_time: Option<Millis>,
}

impl Curve {
    pub fn new() -> Self {
        Self { stride: 1, ..Self::default() }
    }

    /// Records `bar` once the portfolio has been marked to it.
    pub fn observe(&mut self, bar: &Bar, equity: Decimal, exposed: bool) {
        let symbol = self.symbol.get_or_insert_with(|| bar.symbol.clone());
        if *symbol == bar.symbol {
            self.price = bar.close.to_f64();
        }
        let equity = equity.to_f64().unwrap_or(f64::NAN);
        self.first_time.get_or_insert(bar.time);
        self.exposed += u64::from(exposed);
        let day = bar.time.div_euclid(DAY);
        match self.days.last_mut() {
            Some((last, value)) if last.div_euclid(DAY) == day => (*last, *value) = (bar.time, equity),
            _ => self.days.push((bar.time, equity)),
        }
        let point = Point { time: bar.time, equity, price: self.price };
        if self.bars.is_multiple_of(self.stride) {
            self.points.push(point);
            if self.points.len() >= 2 * CHART_POINTS {
                let mut keep = false;
                self.points.retain(|_| {
                    keep = !keep;
                    keep
                });
                self.stride *= 2;
            }
        }
        self.last = Some(point);
        self.bars += 1;
    }

    /// The charted symbol.
    pub fn symbol(&self) -> Option<&str> {
        self.symbol.as_deref()
    }

    /// The chart's points, the last bar always among them.
    pub fn points(&self) -> Vec<Point> {
        let mut points = self.points.clone();
        if let Some(last) = self.last
            && points.last() != Some(&last)
        {
            points.push(last);
        }
        points
    }

    /// Equity at each UTC day's last bar, in time order.
    pub fn daily(&self) -> &[(Millis, f64)] {
        &self.days
    }

    pub fn bars(&self) -> u64 {
        self.bars
    }

    /// The share of bars during which a position was held.
    pub fn exposure(&self) -> f64 {
        if self.bars == 0 { 0.0 } else { self.exposed as f64 / self.bars as f64 }
    }

    /// The first and last bar's times.
    pub fn span(&self) -> Option<(Millis, Millis)> {
        Some((self.first_time?, self.last?.time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(minute: i64, close: i64) -> Bar {
        let close = Decimal::from(close);
        Bar { symbol: "X".into(), time: minute * 60_000, open: close, high: close, low: close, close, volume: 1.into() }
    }

    #[test]
    fn memory_stays_bounded_and_days_close_on_their_last_bar() {
        let mut curve = Curve::new();
        let minutes = 3 * 1440;
        for m in 0..minutes {
            curve.observe(&bar(m, 100 + m % 7), Decimal::from(1000 + m), m % 2 == 0);
        }
        let points = curve.points();
        assert!(points.len() < 2 * CHART_POINTS + 1, "{}", points.len());
        assert_eq!(points.first().map(|p| p.time), Some(0));
        assert_eq!(
            points.last().map(|p| (p.time, p.equity)),
            Some(((minutes - 1) * 60_000, (1000 + minutes - 1) as f64))
        );
        assert_eq!(curve.daily(), [(1439 * 60_000, 2439.0), (2879 * 60_000, 3879.0), (4319 * 60_000, 5319.0)]);
        assert_eq!(curve.exposure(), 0.5);
    }
}
