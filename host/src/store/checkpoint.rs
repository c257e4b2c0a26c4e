//! WAL checkpoints off the write path.
//!
//! Left alone, SQLite checkpoints inside whichever commit grows the WAL past
//! its limit, and that commit then waits for fsync while holding the
//! store's lock; measured, that was most of the webhook path's p99. The
//! store turns automatic checkpoints off, and this thread runs a passive
//! checkpoint on its own connection every [`EVERY`]: it copies what it can
//! and never makes a writer wait.
//!
//! Under steady writes a passive checkpoint never quite catches up, and the
//! WAL only restarts from its beginning once every frame is copied. So when
//! the WAL holds more than [`WAL_LIMIT`] frames, the thread takes the
//! store's lock for one more passive checkpoint, which finds only the few
//! frames written since the last one; the next commit then restarts the WAL.

use std::path::Path;
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::StoreError;

/// Time between checkpoints.
const EVERY: Duration = Duration::from_millis(250);
/// WAL frames (pages) above which the WAL is made to restart, about 32 MiB.
const WAL_LIMIT: i64 = 8192;

/// The checkpoint thread; stops when dropped.
pub(super) struct Checkpointer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a second connection to the database at `path` and starts;
    /// `writer` is the store's own connection.
    pub(super) fn start(path: &Path, writer: Arc<Mutex<Connection>>) -> Result<Self, StoreError> {
        let conn =
            Connection::open(path).map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
        let (stop, stopped) = channel::<()>();
        let thread = std::thread::Builder::new()
            .name("stratbox-checkpoint".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
                    let frames = checkpoint(&conn);
                    if frames.is_some_and(|f| f > WAL_LIMIT) {
                        let writer = writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                        checkpoint(&writer);
                    }
                }
            })
            .map_err(|source| StoreError::Thread { source })?;
        Ok(Self { stop: Some(stop), thread: Some(thread) })
    }
}

/// Runs one passive checkpoint; returns the frames in the WAL, if it worked.
fn checkpoint(conn: &Connection) -> Option<i64> {
    match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1)) {
        Ok(frames) => Some(frames),
        Err(error) => {
            tracing::warn!(%error, "WAL checkpoint failed");
            None
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
