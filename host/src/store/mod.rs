//! Durable state in one SQLite file: orders, fills, positions, feed
//! cursors, strategy states, webhook dedup keys, the event journal and the
//! notification outbox.
//!
//! The file runs in WAL mode, so a process killed at any point leaves the
//! last committed transaction intact. Every change that must not be half
//! applied (a fill and the position it moves; a cursor and the journal line
//! that explains it) happens in one transaction. Money is stored as decimal
//! text, never as floating point.

mod checkpoint;
mod contracts;
mod journal;
mod ledger;
mod order_type;
mod orders;
mod positions;
mod resume;
mod schema;
mod trading;

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;
use rust_decimal::Decimal;

use self::checkpoint::Checkpointer;
pub use self::journal::{InboxItem, Intake, JournalEntry, OutboxItem};
pub use self::orders::{FillRecord, OrderRecord, PositionRecord};
pub use self::resume::{SavedState, Told};
use self::schema::MIGRATIONS;
pub use self::trading::VenueStateRecord;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {path}")]
    Open { path: String, source: rusqlite::Error },
    #[error("the database {path} has schema version {found}, newer than this build knows ({known}); upgrade stratbox")]
    FromTheFuture { path: String, found: i64, known: usize },
    #[error("cannot start the checkpoint thread")]
    Thread { source: std::io::Error },
    #[error("database error while {doing}")]
    Sql { doing: &'static str, source: rusqlite::Error },
    #[error("the database holds an invalid {what}: {value:?}")]
    Corrupt { what: &'static str, value: String },
}

fn sql(doing: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sql { doing, source }
}

/// The database. Calls block briefly; async code calls it from
/// `spawn_blocking` or a dedicated thread.
pub struct Store {
    // Dropped first: the main connection, closing last, checkpoints the
    // rest and removes the WAL.
    _checkpointer: Checkpointer,
    conn: Arc<Mutex<Connection>>,
    path: String,
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let name = path.display().to_string();
        let open_err = |source| StoreError::Open { path: name.clone(), source };
        let conn = Connection::open(path).map_err(open_err)?;
        // Fails here, with the path, if the file is not a SQLite database.
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
        // Checkpoints run on their own thread (see `checkpoint`).
        conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(open_err)?;
        let conn = Arc::new(Mutex::new(conn));
        let checkpointer = Checkpointer::start(path, conn.clone())?;
        let store = Self { _checkpointer: checkpointer, conn, path: name };
        store.migrate()?;
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (the
        // transaction rolls back on drop), so the connection stays usable.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The schema version this build writes.
    pub fn schema_version() -> usize {
        MIGRATIONS.len()
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let found: i64 =
            conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sql("reading the schema version"))?;
        if found > MIGRATIONS.len() as i64 {
            return Err(StoreError::FromTheFuture { path: self.path.clone(), found, known: MIGRATIONS.len() });
        }
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
            let tx = conn.transaction().map_err(sql("starting a migration"))?;
            tx.execute_batch(migration).map_err(sql("applying a migration"))?;
            tx.pragma_update(None, "user_version", (index + 1) as i64).map_err(sql("recording the schema version"))?;
            tx.commit().map_err(sql("committing a migration"))?;
        }
        Ok(())
    }
}

fn decimal(what: &'static str, text: &str) -> Result<Decimal, StoreError> {
    Decimal::from_str(text).map_err(|_| StoreError::Corrupt { what, value: text.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wal_is_checkpointed_into_the_database_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let store = Store::open(&path).unwrap();
        let before = std::fs::metadata(&path).unwrap().len();
        let lines: Vec<_> = (0..2000).map(|n| (n, "k".to_string(), "x".repeat(500))).collect();
        store.append_events(&lines).unwrap();
        // Commits only reach the WAL; the database file grows once a
        // checkpoint copies them over.
        let grown = (0..2400).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(25));
            std::fs::metadata(&path).unwrap().len() > before + 500_000
        });
        assert!(grown, "no checkpoint ran");
    }

    #[test]
    fn migrates_once_and_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let store = Store::open(&path).unwrap();
            assert!(store.advance_cursor("alpaca", "AAPL", 5).unwrap());
            store.append_event(1, "hello", None, "{}").unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.cursor("alpaca", "AAPL").unwrap(), Some(5));
        assert_eq!(store.events_after(0, 10).unwrap().len(), 1);
        let version: i64 = store.lock().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, Store::schema_version() as i64);
        let mode: String = store.lock().pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn refuses_a_newer_schema_and_a_file_that_is_not_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        drop(Store::open(&path).unwrap());
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        assert!(matches!(Store::open(&path), Err(StoreError::FromTheFuture { found: 99, .. })));
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, b"this is not a database, just some text that is long enough").unwrap();
        let err = Store::open(&junk).err().expect("junk is refused");
        assert!(err.to_string().contains("junk.db"), "{err}");
    }

    #[test]
    fn an_old_schema_is_migrated_forward() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            // A database written by a build that knew only migration 1.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute("INSERT INTO feed_cursors VALUES ('alpaca', 'AAPL', 7)", []).unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.cursor("alpaca", "AAPL").unwrap(), Some(7), "data survives the migration");
        store.save_strategy_state("x", b"s", 1, 1).unwrap();
    }
}
