//! Several symbols' bars as one series in time order, for a strategy that
//! trades them together (pairs, portfolios).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc::Receiver;

use super::FeedError;
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

/// Chunks of one symbol's bars, as a reader thread hands them over.
pub type Chunks = Receiver<Result<Vec<Bar>, FeedError>>;

/// Streams of chunks (one per symbol, each in time order) merged into one
/// time order and handed out in batches, holding only each stream's
/// current chunk: the streaming form of [`merge`], with the same order.
pub struct MergedStream {
    sources: Vec<Source>,
}

struct Source {
    chunks: Chunks,
    current: std::vec::IntoIter<Bar>,
    head: Option<Bar>,
    done: bool,
}

impl Source {
    /// Makes `head` the stream's next bar, if it has one.
    fn fill(&mut self) -> Result<(), FeedError> {
        while self.head.is_none() && !self.done {
            match self.current.next() {
                Some(bar) => self.head = Some(bar),
                None => match self.chunks.recv() {
                    Ok(Ok(chunk)) => self.current = chunk.into_iter(),
                    Ok(Err(error)) => return Err(error),
                    // The reader has finished.
                    Err(_) => self.done = true,
                },
            }
        }
        Ok(())
    }
}

impl MergedStream {
    pub fn new(streams: Vec<Chunks>) -> Self {
        let sources = streams
            .into_iter()
            .map(|chunks| Source { chunks, current: Vec::new().into_iter(), head: None, done: false })
            .collect();
        Self { sources }
    }

    /// Up to `n` more bars in time order; empty once every stream is done.
    pub fn next_batch(&mut self, n: usize) -> Result<Vec<Bar>, FeedError> {
        let mut batch = Vec::with_capacity(n);
        while batch.len() < n {
            let mut earliest: Option<usize> = None;
            for at in 0..self.sources.len() {
                self.sources[at].fill()?;
                let Some(bar) = &self.sources[at].head else { continue };
                if earliest.is_none_or(|e| self.sources[e].head.as_ref().is_some_and(|h| bar.time < h.time)) {
                    earliest = Some(at);
                }
            }
            let Some(at) = earliest else { break };
            if let Some(bar) = self.sources[at].head.take() {
                batch.push(bar);
            }
        }
        Ok(batch)
    }
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

    #[test]
    fn the_stream_gives_the_same_order_in_any_chunks_and_stops_at_an_error() {
        let series = vec![bars("A", &[1, 3, 5, 7]), bars("B", &[2, 3, 8]), bars("C", &[]), bars("D", &[0])];
        let whole = merge(series.clone());
        for chunk in [1, 2, 5] {
            let streams = series
                .iter()
                .map(|bars| {
                    let (tx, rx) = std::sync::mpsc::sync_channel(64);
                    for piece in bars.chunks(chunk) {
                        tx.send(Ok(piece.to_vec())).unwrap();
                    }
                    rx
                })
                .collect();
            let mut stream = MergedStream::new(streams);
            let mut got = Vec::new();
            loop {
                let batch = stream.next_batch(3).unwrap();
                if batch.is_empty() {
                    break;
                }
                got.extend(batch);
            }
            assert_eq!(got, whole, "chunks of {chunk}");
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(4);
        tx.send(Ok(bars("A", &[1]))).unwrap();
        tx.send(Err(FeedError::Empty { path: "a.csv".into() })).unwrap();
        let mut stream = MergedStream::new(vec![rx]);
        assert_eq!(stream.next_batch(1).unwrap().len(), 1);
        assert!(stream.next_batch(1).is_err(), "the reader's error ends the stream");
    }
}
