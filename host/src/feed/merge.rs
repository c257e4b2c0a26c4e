//! Several symbols' bars as one series in time order, for a strategy that
//! trades them together (pairs, portfolios).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::bar::Bar;

/// Merges series that are each in time order into one: a k-way merge, so
/// the cost is O(n log k) for n bars of k symbols. Bars of the same time
/// come in the order of their series, so the result does not depend on
/// anything but the input.
pub fn merge(series: Vec<Vec<Bar>>) -> Vec<Bar> {
    let total = series.iter().map(Vec::len).sum();
    let mut merged = Vec::with_capacity(total);
    let mut cursors: Vec<std::vec::IntoIter<Bar>> = series.into_iter().map(Vec::into_iter).collect();
    let mut heads: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::with_capacity(cursors.len());
    let mut pending: Vec<Option<Bar>> = cursors.iter_mut().map(Iterator::next).collect();
    for (at, bar) in pending.iter().enumerate() {
        if let Some(bar) = bar {
            heads.push(Reverse((bar.time, at)));
        }
    }
    while let Some(Reverse((_, at))) = heads.pop() {
        let Some(bar) = pending[at].take() else { continue };
        merged.push(bar);
        if let Some(next) = cursors[at].next() {
            heads.push(Reverse((next.time, at)));
            pending[at] = Some(next);
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rust_decimal::Decimal;

    use super::*;

    fn bars(symbol: &str, times: &[i64]) -> Vec<Bar> {
        let symbol: Arc<str> = Arc::from(symbol);
        let one = Decimal::ONE;
        times
            .iter()
            .map(|&time| Bar { symbol: symbol.clone(), time, open: one, high: one, low: one, close: one, volume: one })
            .collect()
    }

    #[test]
    fn series_interleave_in_time_and_ties_keep_series_order() {
        let merged = merge(vec![bars("A", &[1, 3, 5, 7]), bars("B", &[2, 3, 8]), bars("C", &[]), bars("D", &[0])]);
        let seen: Vec<(i64, &str)> = merged.iter().map(|b| (b.time, &*b.symbol)).collect();
        assert_eq!(seen, [(0, "D"), (1, "A"), (2, "B"), (3, "A"), (3, "B"), (5, "A"), (7, "A"), (8, "B")]);
        assert!(merge(Vec::new()).is_empty());
    }
}
