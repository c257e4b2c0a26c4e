//! The trading path's way into the journal: a bounded queue in front of the
//! store.
//!
//! Engine threads and the feed hand journal lines (which feed notifications)
//! to [`Journal::record`], which never waits: when the queue is full the
//! line is dropped and counted. A writer thread appends what is queued to
//! the store in batches and, once it has caught up after drops, journals
//! `journal.dropped` with the count, so the loss is itself notified.
//!
//! An engine that keeps no state hands over each input's lines together
//! with the webhook delivery it acted on ([`Journal::record_input`]): the
//! writer appends the lines and deletes the delivery from the inbox in one
//! transaction, so a crash never leaves a delivery both acted on (in the
//! journal) and waiting to be handed over again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::bar::{Millis, now_ms};
use crate::store::Store;

/// Lines appended per transaction, at most.
const BATCH: usize = 256;
/// Attempts at appending one batch before it is given up and counted.
const ATTEMPTS: u32 = 5;

type Line = (Millis, String, String);

/// What one queue slot carries: lines, and the inbox row they complete.
struct Entry {
    lines: Vec<Line>,
    done: Option<i64>,
}

/// A handle on the queue; clones share it. The writer ends once every
/// handle is dropped and the queue is drained.
#[derive(Clone)]
pub struct Journal {
    tx: SyncSender<Entry>,
    dropped: Arc<AtomicU64>,
}

impl Journal {
    /// Starts the writer thread with room for `capacity` lines.
    pub fn start(store: Arc<Store>, capacity: usize) -> std::io::Result<(Self, JoinHandle<()>)> {
        let (tx, rx) = sync_channel(capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let counter = dropped.clone();
        let writer =
            std::thread::Builder::new().name("stratbox-journal".into()).spawn(move || write(&store, &rx, &counter))?;
        Ok((Self { tx, dropped }, writer))
    }

    /// Queues a line stamped now; drops and counts it if the queue is full.
    pub fn record(&self, kind: &str, data: &serde_json::Value) {
        let entry = Entry { lines: vec![(now_ms(), kind.to_string(), data.to_string())], done: None };
        if let Err(error) = self.tx.try_send(entry) {
            self.lost(error, 1);
        }
    }

    /// Queues one input's lines with the webhook delivery (inbox row, in
    /// `store`) it acted on, to be committed together. With a full queue the
    /// lines are dropped and counted, and the delivery, which was acted on,
    /// is marked done at once.
    pub fn record_input(&self, lines: Vec<(&'static str, serde_json::Value)>, done: Option<(i64, &Store)>) {
        if lines.is_empty() && done.is_none() {
            return;
        }
        let now = now_ms();
        let lines = lines.into_iter().map(|(kind, data)| (now, kind.to_string(), data.to_string())).collect();
        if let Err(error) = self.tx.try_send(Entry { lines, done: done.map(|(id, _)| id) }) {
            let count = match &error {
                TrySendError::Full(entry) | TrySendError::Disconnected(entry) => entry.lines.len(),
            };
            self.lost(error, count as u64);
            if let Some((id, store)) = done
                && let Err(error) = store.delivery_done(id)
            {
                tracing::error!(%error, id, "cannot mark a webhook delivery done");
            }
        }
    }

    fn lost(&self, error: TrySendError<Entry>, count: u64) {
        if let TrySendError::Disconnected(_) = error {
            tracing::error!("the journal writer has stopped; lines lost");
        }
        self.dropped.fetch_add(count, Ordering::Relaxed);
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The count of lines dropped, shared: it can be read after the
    /// journal (and its writer) are gone, without keeping them alive.
    pub fn dropped_counter(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }
}

/// The writer: batches of queued lines into the store, until every handle
/// is gone.
fn write(store: &Store, rx: &Receiver<Entry>, dropped: &AtomicU64) {
    let mut reported = 0;
    while let Ok(first) = rx.recv() {
        let mut entries = vec![first];
        entries.extend(rx.try_iter().take(BATCH - 1));
        let done: Vec<i64> = entries.iter().filter_map(|e| e.done).collect();
        let batch: Vec<Line> = entries.into_iter().flat_map(|e| e.lines).collect();
        let mut attempt = 0;
        while let Err(error) = store.append_events_completing(&batch, &done) {
            attempt += 1;
            if attempt >= ATTEMPTS {
                tracing::error!(%error, lines = batch.len(), "journal lines lost");
                dropped.fetch_add(batch.len() as u64, Ordering::Relaxed);
                break;
            }
            tracing::warn!(%error, attempt, "cannot append to the journal; retrying");
            std::thread::sleep(Duration::from_millis(100 << attempt));
        }
        let total = dropped.load(Ordering::Relaxed);
        if total > reported {
            tracing::warn!(dropped = total - reported, "journal queue was full; lines dropped");
            let data = serde_json::json!({ "dropped": total - reported, "total": total });
            let time = batch.last().map_or(0, |(t, ..)| *t);
            match store.append_events(&[(time, "journal.dropped".into(), data.to_string())]) {
                Ok(()) => reported = total,
                Err(error) => tracing::error!(%error, "cannot report dropped journal lines"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(store: &Store) -> Vec<String> {
        store.events_after(0, 10_000).unwrap().into_iter().map(|e| e.kind).collect()
    }

    #[test]
    fn lines_arrive_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("j.db")).unwrap());
        let (journal, writer) = Journal::start(store.clone(), 1024).unwrap();
        for n in 0..500 {
            journal.record(&format!("k{n}"), &serde_json::json!({ "n": n }));
        }
        drop(journal);
        writer.join().unwrap();
        let expected: Vec<String> = (0..500).map(|n| format!("k{n}")).collect();
        assert_eq!(kinds(&store), expected);
    }

    #[test]
    fn a_stalled_store_never_blocks_the_caller_and_drops_are_counted_and_journaled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let store = Arc::new(Store::open(&path).unwrap());
        // Another connection holds the write lock: the writer stalls.
        let blocker = rusqlite::Connection::open(&path).unwrap();
        blocker.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let (journal, writer) = Journal::start(store.clone(), 8).unwrap();
        journal.record("order.submitted", &serde_json::json!({}));
        std::thread::sleep(Duration::from_millis(200)); // the writer likely takes it and stalls
        // Every call returns although nothing can be written: the queue
        // holds 8, the rest drop.
        for n in 0..100 {
            journal.record("order.filled", &serde_json::json!({ "n": n }));
        }
        // The queue holds 8, and the writer may or may not have taken the
        // first line before it stalled (the sleep above is no promise on a
        // slow machine): 92 or 93 dropped.
        let dropped = journal.dropped();
        assert!(dropped == 92 || dropped == 93, "{dropped}");
        blocker.execute_batch("COMMIT").unwrap();
        drop(journal);
        writer.join().unwrap();

        let kinds = kinds(&store);
        let kept = kinds.iter().filter(|k| *k == "order.filled").count() as u64;
        assert_eq!(kept + dropped, 100, "every line is kept or counted");
        let reports = store.events_after(0, 10_000).unwrap().into_iter().filter(|e| e.kind == "journal.dropped");
        let reports: Vec<serde_json::Value> = reports.map(|e| serde_json::from_str(&e.data).unwrap()).collect();
        assert_eq!(reports.len(), 1, "{kinds:?}");
        assert_eq!(reports[0]["dropped"], dropped);
    }
}
