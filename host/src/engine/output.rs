//! The host's printed output: a bounded queue of lines in front of stdout.
//!
//! Engines, the feed and the watcher hand lines over without waiting. When
//! the terminal (or a pipe nobody reads) cannot keep up, lines beyond the
//! queue are dropped and counted, and the count is printed once there is
//! room again: a strategy's flood of notifications costs at most the queue,
//! never unbounded memory.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

/// Lines the queue holds; each is at most a few KiB (notifications are cut
/// to 4 KiB), so this bounds the queue to tens of MiB.
const QUEUE: usize = 4096;

/// A handle on the queue; clones share it.
#[derive(Clone)]
pub(crate) struct Lines {
    tx: mpsc::Sender<String>,
    dropped: Arc<AtomicU64>,
}

impl Lines {
    /// Queues `line`, or drops and counts it if the queue is full.
    pub(crate) fn send(&self, line: String) {
        if self.tx.try_send(line).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Starts the writer of `out`; it ends once every [`Lines`] is dropped.
pub(crate) fn printer(mut out: impl Write + Send + 'static) -> (Lines, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
    let dropped = Arc::new(AtomicU64::new(0));
    let counter = dropped.clone();
    let task = tokio::task::spawn_blocking(move || {
        let mut reported = 0;
        while let Some(line) = rx.blocking_recv() {
            let total = counter.load(Ordering::Relaxed);
            let mut text = line;
            if total > reported {
                text = format!(
                    "[stratbox] {} lines of output dropped: the output was not read fast enough\n{text}",
                    total - reported
                );
                reported = total;
            }
            if out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_err() {
                break;
            }
        }
    });
    (Lines { tx, dropped }, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that blocks until released, like a pipe nobody reads.
    struct Stuck(std::sync::mpsc::Receiver<()>, Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            self.1.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_stuck_terminal_costs_at_most_the_queue_and_the_loss_is_reported() {
        let (release, gate) = std::sync::mpsc::channel();
        let written = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (lines, task) = printer(Stuck(gate, written.clone()));
        for n in 0..(QUEUE * 3) {
            lines.send(format!("line {n}\n"));
        }
        let dropped = lines.dropped.load(Ordering::Relaxed);
        assert!(dropped >= (QUEUE * 2 - 1) as u64, "{dropped}");
        drop(lines);
        drop(release); // every write now goes through
        task.await.unwrap();
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        // Reported as the printer finds them, possibly in several parts.
        let reported: u64 = text
            .lines()
            .filter_map(|l| l.strip_prefix("[stratbox] "))
            .filter_map(|l| l.split(' ').next()?.parse::<u64>().ok())
            .sum();
        assert_eq!(reported, dropped, "{}", &text[..200]);
    }
}
