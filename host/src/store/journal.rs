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
        self.append_events_completing(lines, &[])
    }

    /// Appends `lines` and deletes the webhook inbox rows `done` (the
    /// deliveries those lines record acting on), in one transaction.
    pub fn append_events_completing(&self, lines: &[(Millis, String, String)], done: &[i64]) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(sql("starting to append to the journal"))?;
        for (time, kind, data) in lines {
            append(&tx, *time, kind, None, data)?;
        }
        for id in done {
            tx.execute("DELETE FROM webhook_inbox WHERE id = ?1", params![id])
                .map_err(sql("marking a webhook delivery done"))?;
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

    /// The newest `limit` journal lines, oldest first.
    pub fn latest_events(&self, limit: usize) -> Result<Vec<JournalEntry>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT id, time_ms, kind, venue, data FROM events ORDER BY id DESC LIMIT ?1")
            .map_err(sql("reading the journal"))?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                Ok(JournalEntry { id: r.get(0)?, time: r.get(1)?, kind: r.get(2)?, venue: r.get(3)?, data: r.get(4)? })
            })
            .map_err(sql("reading the journal"))?;
        let mut newest: Vec<JournalEntry> = rows.collect::<Result<_, _>>().map_err(sql("reading the journal"))?;
        newest.reverse();
        Ok(newest)
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

    /// Pending notifications of the sinks whose oldest pending one is due
    /// by `now`, oldest first. A sink is gated by its oldest notification
    /// alone, so nothing queued after a held one can overtake it.
    pub fn due_notifications(&self, now: Millis, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, sink, event_id, kind, time_ms, data, attempts FROM outbox o
                 WHERE state = 'pending'
                   AND (SELECT h.due_ms FROM outbox h WHERE h.sink = o.sink AND h.state = 'pending'
                        ORDER BY h.id LIMIT 1) <= ?1
                 ORDER BY id LIMIT ?2",
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

    /// How many notifications each sink has waiting, for metrics.
    pub fn outbox_depths(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT sink, COUNT(*) FROM outbox WHERE state = 'pending' GROUP BY sink ORDER BY sink")
            .map_err(sql("counting the outbox"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64)))
            .map_err(sql("counting the outbox"))?;
        rows.collect::<Result<_, _>>().map_err(sql("counting the outbox"))
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

/// What became of a webhook delivery offered to the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intake {
    /// Recorded with its dedup key, in one transaction.
    Accepted,
    /// The route saw the key within its window; nothing was recorded.
    Duplicate,
    /// The inbox holds `capacity` deliveries; nothing was recorded.
    Full,
}

/// An accepted webhook delivery waiting to be handed to one strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxItem {
    pub id: i64,
    pub route: String,
    pub key: String,
    pub strategy: String,
    pub received: Millis,
    /// What to hand over, as the webhook module wrote it.
    pub inbound: String,
}

impl Store {
    /// Records a delivery: its dedup key (valid until `expires`) and one
    /// inbox row per `(strategy, inbound)`, all in one transaction, unless
    /// the key is already there and unexpired or the inbox is full.
    pub fn accept_delivery(
        &self,
        route: &str,
        key: &str,
        now: Millis,
        expires: Millis,
        rows: &[(String, String)],
        capacity: usize,
    ) -> Result<Intake, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(sql("starting to accept a webhook delivery"))?;
        let seen: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM webhook_deliveries WHERE route = ?1 AND key = ?2 AND COALESCE(expires_ms, 0) > ?3",
                params![route, key, now],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("looking up a webhook delivery"))?;
        if seen.is_some() {
            return Ok(Intake::Duplicate);
        }
        let waiting: i64 = tx
            .query_row("SELECT COUNT(*) FROM webhook_inbox", [], |r| r.get(0))
            .map_err(sql("counting waiting webhook deliveries"))?;
        if waiting.saturating_add(rows.len() as i64) > capacity as i64 && waiting > 0 {
            return Ok(Intake::Full);
        }
        tx.execute(
            "INSERT INTO webhook_deliveries (route, key, received_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (route, key) DO UPDATE SET received_ms = excluded.received_ms, expires_ms = excluded.expires_ms",
            params![route, key, now, expires],
        )
        .map_err(sql("recording a webhook delivery"))?;
        for (strategy, inbound) in rows {
            tx.execute(
                "INSERT INTO webhook_inbox (route, key, strategy, received_ms, inbound) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![route, key, strategy, now, inbound],
            )
            .map_err(sql("queueing a webhook delivery"))?;
        }
        tx.commit().map_err(sql("committing a webhook delivery"))?;
        Ok(Intake::Accepted)
    }

    /// Deliveries waiting in the inbox, oldest first, at most `limit`.
    pub fn waiting_deliveries(&self, after_id: i64, limit: usize) -> Result<Vec<InboxItem>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, route, key, strategy, received_ms, inbound FROM webhook_inbox WHERE id > ?1
                 ORDER BY id LIMIT ?2",
            )
            .map_err(sql("reading the webhook inbox"))?;
        let rows = stmt
            .query_map(params![after_id, limit as i64], |r| {
                Ok(InboxItem {
                    id: r.get(0)?,
                    route: r.get(1)?,
                    key: r.get(2)?,
                    strategy: r.get(3)?,
                    received: r.get(4)?,
                    inbound: r.get(5)?,
                })
            })
            .map_err(sql("reading the webhook inbox"))?;
        rows.collect::<Result<_, _>>().map_err(sql("reading the webhook inbox"))
    }

    /// Removes a delivery from the inbox once it has been handed over.
    pub fn delivery_done(&self, id: i64) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute("DELETE FROM webhook_inbox WHERE id = ?1", params![id])
            .map_err(sql("marking a webhook delivery done"))?;
        Ok(())
    }

    /// Forgets dedup keys whose window ended by `now`; returns how many.
    pub fn prune_delivery_keys(&self, now: Millis) -> Result<usize, StoreError> {
        let conn = self.lock();
        conn.execute("DELETE FROM webhook_deliveries WHERE COALESCE(expires_ms, 0) <= ?1", params![now])
            .map_err(sql("pruning webhook dedup keys"))
    }

    /// Dedup keys still kept, for tests and diagnostics.
    pub fn delivery_keys(&self) -> Result<usize, StoreError> {
        let conn = self.lock();
        conn.query_row("SELECT COUNT(*) FROM webhook_deliveries", [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(sql("counting webhook dedup keys"))
    }

    /// Records that `sink` answered 410 at the URL hashed as `url_sha256`.
    pub fn disable_sink(&self, sink: &str, url_sha256: &str, reason: &str, now: Millis) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO disabled_sinks (sink, url_sha256, reason, disabled_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (sink) DO UPDATE SET url_sha256 = excluded.url_sha256, reason = excluded.reason,
             disabled_ms = excluded.disabled_ms",
            params![sink, url_sha256, reason, now],
        )
        .map_err(sql("disabling a sink"))?;
        Ok(())
    }

    /// Disabled sinks, as `(sink, url_sha256)`.
    pub fn disabled_sinks(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT sink, url_sha256 FROM disabled_sinks")
            .map_err(sql("reading disabled sinks"))?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(sql("reading disabled sinks"))?;
        rows.collect::<Result<_, _>>().map_err(sql("reading disabled sinks"))
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
