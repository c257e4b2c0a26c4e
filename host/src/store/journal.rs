//! The event journal and the notification outbox fed from it.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Store, StoreError, sql};
use crate::bar::Millis;

/// One line of the event journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub id: i64,
    pub time: Millis,
    pub kind: String,
    pub venue: Option<String>,
    /// JSON text.
    pub data: String,
}

/// A notification waiting in (or taken from) the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: i64,
    pub sink: String,
    /// The journal line it came from; also its delivery id downstream.
    pub event_id: i64,
    pub kind: String,
    pub time: Millis,
    /// JSON text.
    pub data: String,
    pub attempts: i64,
}

impl Store {
    /// Appends a line to the journal and returns its id.
    pub fn append_event(&self, time: Millis, kind: &str, venue: Option<&str>, data: &str) -> Result<i64, StoreError> {
        let conn = self.lock();
        append(&conn, time, kind, venue, data)
    }

    /// Appends `(time, kind, data)` lines to the journal in one transaction.
    pub fn append_events(&self, lines: &[(Millis, String, String)]) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(sql("starting to append to the journal"))?;
        for (time, kind, data) in lines {
            append(&tx, *time, kind, None, data)?;
        }
        tx.commit().map_err(sql("committing journal lines"))
    }

    /// Journal lines after `after_id`, oldest first, at most `limit`.
    pub fn events_after(&self, after_id: i64, limit: usize) -> Result<Vec<JournalEntry>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT id, time_ms, kind, venue, data FROM events WHERE id > ?1 ORDER BY id LIMIT ?2")
            .map_err(sql("reading the journal"))?;
        let rows = stmt
            .query_map(params![after_id, limit as i64], |r| {
                Ok(JournalEntry { id: r.get(0)?, time: r.get(1)?, kind: r.get(2)?, venue: r.get(3)?, data: r.get(4)? })
            })
            .map_err(sql("reading the journal"))?;
        rows.collect::<Result<_, _>>().map_err(sql("reading the journal"))
    }

    /// The last journal line turned into notifications.
    pub fn notify_cursor(&self) -> Result<i64, StoreError> {
        let conn = self.lock();
        conn.query_row("SELECT last_event_id FROM notify_cursor WHERE name = 'outbox'", [], |r| r.get(0))
            .optional()
            .map(|v| v.unwrap_or(0))
            .map_err(sql("reading the notification cursor"))
    }

    /// Queues notifications and moves the cursor past the journal lines
    /// they came from, in one transaction: none is queued twice or skipped.
    pub fn enqueue(&self, items: &[OutboxItem], cursor: i64) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(sql("starting to queue notifications"))?;
        for item in items {
            tx.execute(
                "INSERT OR IGNORE INTO outbox (sink, event_id, kind, time_ms, data, due_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?4)",
                params![item.sink, item.event_id, item.kind, item.time, item.data],
            )
            .map_err(sql("queueing a notification"))?;
        }
        tx.execute(
            "INSERT INTO notify_cursor (name, last_event_id) VALUES ('outbox', ?1)
             ON CONFLICT (name) DO UPDATE SET last_event_id = MAX(last_event_id, excluded.last_event_id)",
            params![cursor],
        )
        .map_err(sql("moving the notification cursor"))?;
        tx.commit().map_err(sql("committing notifications"))
    }

    /// Pending notifications due by `now`, oldest first.
    pub fn due_notifications(&self, now: Millis, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, sink, event_id, kind, time_ms, data, attempts FROM outbox
                 WHERE state = 'pending' AND due_ms <= ?1 ORDER BY due_ms, id LIMIT ?2",
            )
            .map_err(sql("reading the outbox"))?;
        let rows = stmt
            .query_map(params![now, limit as i64], |r| {
                Ok(OutboxItem {
                    id: r.get(0)?,
                    sink: r.get(1)?,
                    event_id: r.get(2)?,
                    kind: r.get(3)?,
                    time: r.get(4)?,
                    data: r.get(5)?,
                    attempts: r.get(6)?,
                })
            })
            .map_err(sql("reading the outbox"))?;
        rows.collect::<Result<_, _>>().map_err(sql("reading the outbox"))
    }

    /// Holds every pending notification of `sink` until `until` at least,
    /// so a sink in backoff waits as a whole, in order.
    pub fn hold_sink(&self, sink: &str, until: Millis) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "UPDATE outbox SET due_ms = MAX(due_ms, ?2) WHERE sink = ?1 AND state = 'pending'",
            params![sink, until],
        )
        .map_err(sql("holding a sink's notifications"))?;
        Ok(())
    }

    /// Records a delivery's outcome: `sent`, `dropped`, or still `pending`
    /// and due again at `retry_at`.
    pub fn settle_notification(&self, id: i64, state: &str, retry_at: Option<Millis>) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "UPDATE outbox SET state = ?2, attempts = attempts + 1, due_ms = COALESCE(?3, due_ms) WHERE id = ?1",
            params![id, state, retry_at],
        )
        .map_err(sql("settling a notification"))?;
        Ok(())
    }
}

pub(super) fn append(
    conn: &Connection,
    time: Millis,
    kind: &str,
    venue: Option<&str>,
    data: &str,
) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO events (time_ms, kind, venue, data) VALUES (?1, ?2, ?3, ?4)",
        params![time, kind, venue, data],
    )
    .map_err(sql("appending to the journal"))?;
    Ok(conn.last_insert_rowid())
}
