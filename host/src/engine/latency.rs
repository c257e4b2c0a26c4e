//! How long a strategy takes to act on its feed: from the moment the feed
//! hands a batch of bars over to the moment the engine has finished with
//! it, queueing included. This is what a hostile neighbour would inflate.

use std::collections::VecDeque;
use std::time::Duration;

/// The most recent samples kept.
const WINDOW: usize = 1024;

/// Inputs between two recomputations of the percentiles: sorting the
/// window after every input would cost more than the input.
const EVERY: u64 = 64;

/// The latencies of a strategy's most recent inputs.
#[derive(Debug, Default)]
pub struct Latencies {
    recent: VecDeque<u64>,
    /// Every input since the start, for the maximum.
    count: u64,
    max_us: u64,
    /// The percentiles as last computed.
    last: std::cell::Cell<LatencySummary>,
}

/// A summary of [`Latencies`], as `/health` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LatencySummary {
    /// Inputs measured since the start.
    pub count: u64,
    /// Median and 99th percentile over the last 1,024, in µs.
    pub p50_us: u64,
    pub p99_us: u64,
    /// The slowest since the start, in µs.
    pub max_us: u64,
}

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(us);
        self.count += 1;
        self.max_us = self.max_us.max(us);
    }

    /// The counts as of now; the percentiles as of the last multiple of
    /// [`EVERY`] inputs (or the first few).
    pub fn summary(&self) -> LatencySummary {
        let last = self.last.get();
        if self.count > EVERY && self.count - last.count < EVERY {
            return LatencySummary { count: self.count, max_us: self.max_us, ..last };
        }
        let summary = self.compute();
        self.last.set(summary);
        summary
    }

    fn compute(&self) -> LatencySummary {
        let mut sorted: Vec<u64> = self.recent.iter().copied().collect();
        sorted.sort_unstable();
        let at = |q: f64| sorted.get(((sorted.len() as f64 - 1.0) * q).round() as usize).copied().unwrap_or(0);
        LatencySummary { count: self.count, p50_us: at(0.5), p99_us: at(0.99), max_us: self.max_us }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_cover_the_recent_window_and_the_maximum_all_time() {
        let mut latencies = Latencies::default();
        assert_eq!(latencies.summary(), LatencySummary::default());
        latencies.record(Duration::from_secs(1));
        for us in 1..=2000 {
            latencies.record(Duration::from_micros(us));
        }
        let s = latencies.summary();
        assert_eq!(s.count, 2001);
        assert_eq!(s.max_us, 1_000_000, "the slowest ever, though outside the window");
        // The window holds 977..=2000.
        assert_eq!(s.p50_us, 1489);
        assert_eq!(s.p99_us, 1990);
    }
}
