//! Durable state in one SQLite file: orders, fills, positions, feed
//! cursors and an append-only event journal.
//!
//! The file runs in WAL mode, so a process killed at any point leaves the
//! last committed transaction intact. Every change that must not be half
//! applied (a fill and the position it moves; a cursor and the journal line
//! that explains it) happens in one transaction. Money is stored as decimal
//! text, never as floating point.

use std::path::Path;
use std::str::FromStr;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use rust_decimal::Decimal;

use crate::bar::Millis;
use crate::order::Side;

/// Schema migrations, applied in order; the database records how many ran
/// in `PRAGMA user_version`. Never edit one that has shipped: append.
const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    "CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time_ms INTEGER NOT NULL,
        kind TEXT NOT NULL,
        venue TEXT,
        data TEXT NOT NULL
    );
    CREATE TABLE feed_cursors (
        feed TEXT NOT NULL,
        symbol TEXT NOT NULL,
        last_bar_ms INTEGER NOT NULL,
        PRIMARY KEY (feed, symbol)
    );
    CREATE TABLE orders (
        client_order_id TEXT PRIMARY KEY,
        venue TEXT NOT NULL,
        strategy TEXT NOT NULL,
        intent INTEGER NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
        qty TEXT NOT NULL,
        order_type TEXT NOT NULL,
        limit_price TEXT,
        time_in_force TEXT NOT NULL,
        status TEXT NOT NULL,
        venue_order_id TEXT,
        filled_qty TEXT NOT NULL DEFAULT '0',
        created_ms INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE INDEX orders_by_status ON orders (venue, status);
    CREATE TABLE fills (
        venue TEXT NOT NULL,
        fill_id TEXT NOT NULL,
        client_order_id TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
        qty TEXT NOT NULL,
        price TEXT NOT NULL,
        commission TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        PRIMARY KEY (venue, fill_id)
    );
    CREATE TABLE positions (
        venue TEXT NOT NULL,
        symbol TEXT NOT NULL,
        qty TEXT NOT NULL,
        avg_price TEXT NOT NULL,
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY (venue, symbol)
    );",
    // 2: strategy state, so a restarted strategy resumes where it stopped.
    "CREATE TABLE strategy_states (
        instance TEXT PRIMARY KEY,
        state BLOB NOT NULL,
        last_bar_ms INTEGER NOT NULL,
        saved_ms INTEGER NOT NULL
    );",
    // 3: webhook deliveries already acted on, so a retried one never acts twice.
    "CREATE TABLE webhook_deliveries (
        route TEXT NOT NULL,
        key TEXT NOT NULL,
        received_ms INTEGER NOT NULL,
        PRIMARY KEY (route, key)
    );",
    // 4: the notification outbox, fed from the journal.
    "CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        sink TEXT NOT NULL,
        event_id INTEGER NOT NULL,
        kind TEXT NOT NULL,
        time_ms INTEGER NOT NULL,
        data TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        due_ms INTEGER NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        UNIQUE (sink, event_id)
    );
    CREATE INDEX outbox_due ON outbox (state, due_ms);
    CREATE TABLE notify_cursor (
        name TEXT PRIMARY KEY,
        last_event_id INTEGER NOT NULL
    );",
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the database {path}")]
    Open { path: String, source: rusqlite::Error },
    #[error("the database {path} has schema version {found}, newer than this build knows ({known}); upgrade stratbox")]
    FromTheFuture { path: String, found: i64, known: usize },
    #[error("database error while {doing}")]
    Sql { doing: &'static str, source: rusqlite::Error },
    #[error("the database holds an invalid {what}: {value:?}")]
    Corrupt { what: &'static str, value: String },
}

fn sql(doing: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sql { doing, source }
}

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

/// An order as the host knows it; `client_order_id` is its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub client_order_id: String,
    pub venue: String,
    pub strategy: String,
    pub intent: u64,
    pub symbol: String,
    pub side: Side,
    pub qty: Decimal,
    /// `market` or `limit`.
    pub order_type: String,
    pub limit_price: Option<Decimal>,
    pub time_in_force: String,
    /// `pending` (persisted, not yet acknowledged), `accepted`,
    /// `partially_filled`, `filled`, `canceled`, `rejected` or `unknown`.
    pub status: String,
    pub venue_order_id: Option<String>,
    pub filled_qty: Decimal,
    pub created: Millis,
    pub updated: Millis,
}

impl OrderRecord {
    /// Whether the order may still trade.
    pub fn is_open(&self) -> bool {
        matches!(self.status.as_str(), "pending" | "accepted" | "partially_filled" | "unknown")
    }
}

/// One execution, identified by the venue's fill id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillRecord {
    pub venue: String,
    pub fill_id: String,
    pub client_order_id: String,
    pub symbol: String,
    pub side: Side,
    pub qty: Decimal,
    pub price: Decimal,
    pub commission: Decimal,
    pub time: Millis,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionRecord {
    pub venue: String,
    pub symbol: String,
    pub qty: Decimal,
    pub avg_price: Decimal,
}

/// The database. Calls block briefly; async code calls it from
/// `spawn_blocking` or a dedicated thread.
pub struct Store {
    conn: Mutex<Connection>,
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
        conn.pragma_update(None, "foreign_keys", "ON").map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(open_err)?;
        let store = Self { conn: Mutex::new(conn), path: name };
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

    /// The time of the last bar delivered for `feed` and `symbol`.
    pub fn cursor(&self, feed: &str, symbol: &str) -> Result<Option<Millis>, StoreError> {
        let conn = self.lock();
        conn.query_row(
            "SELECT last_bar_ms FROM feed_cursors WHERE feed = ?1 AND symbol = ?2",
            params![feed, symbol],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql("reading a feed cursor"))
    }

    /// Moves a cursor forward to `time`; returns `false` (and changes
    /// nothing) if it is already there or beyond.
    pub fn advance_cursor(&self, feed: &str, symbol: &str, time: Millis) -> Result<bool, StoreError> {
        let conn = self.lock();
        let changed = conn
            .execute(
                "INSERT INTO feed_cursors (feed, symbol, last_bar_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (feed, symbol) DO UPDATE SET last_bar_ms = excluded.last_bar_ms
                 WHERE excluded.last_bar_ms > feed_cursors.last_bar_ms",
                params![feed, symbol, time],
            )
            .map_err(sql("advancing a feed cursor"))?;
        Ok(changed == 1)
    }

    /// Persists a new order; returns `false` if one with the same client
    /// order id exists (the caller is retrying and must not send twice).
    pub fn insert_order(&self, order: &OrderRecord) -> Result<bool, StoreError> {
        let conn = self.lock();
        let inserted = conn
            .execute(
                "INSERT OR IGNORE INTO orders (client_order_id, venue, strategy, intent, symbol, side, qty, order_type,
                    limit_price, time_in_force, status, venue_order_id, filled_qty, created_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                params![
                    order.client_order_id,
                    order.venue,
                    order.strategy,
                    order.intent as i64,
                    order.symbol,
                    side_text(order.side),
                    order.qty.to_string(),
                    order.order_type,
                    order.limit_price.map(|p| p.to_string()),
                    order.time_in_force,
                    order.status,
                    order.venue_order_id,
                    order.filled_qty.to_string(),
                    order.created,
                    order.updated,
                ],
            )
            .map_err(sql("persisting an order"))?;
        Ok(inserted == 1)
    }

    /// Records what the venue says about an order's state. The filled
    /// quantity moves only with [`Store::record_fill`].
    pub fn update_order(
        &self,
        client_order_id: &str,
        status: &str,
        venue_order_id: Option<&str>,
        time: Millis,
    ) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "UPDATE orders SET status = ?2, venue_order_id = COALESCE(?3, venue_order_id), updated_ms = ?4
             WHERE client_order_id = ?1",
            params![client_order_id, status, venue_order_id, time],
        )
        .map_err(sql("updating an order"))?;
        Ok(())
    }

    /// Quantity and `Σ qty × price` of the fills recorded for an order.
    pub fn filled(&self, client_order_id: &str) -> Result<(Decimal, Decimal), StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT qty, price FROM fills WHERE client_order_id = ?1")
            .map_err(sql("reading fills"))?;
        let rows = stmt
            .query_map(params![client_order_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(sql("reading fills"))?;
        let mut qty = Decimal::ZERO;
        let mut notional = Decimal::ZERO;
        for row in rows {
            let (q, p) = row.map_err(sql("reading fills"))?;
            let (q, p) = (decimal("fill quantity", &q)?, decimal("fill price", &p)?);
            qty += q;
            notional += q * p;
        }
        Ok((qty, notional))
    }

    pub fn order(&self, client_order_id: &str) -> Result<Option<OrderRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!("{ORDER_COLUMNS} WHERE client_order_id = ?1"))
            .map_err(sql("reading an order"))?;
        let row = stmt.query_row(params![client_order_id], raw_order).optional().map_err(sql("reading an order"))?;
        row.map(order_from_raw).transpose()
    }

    /// Keeps the latest `save-state` of a strategy instance, with the time
    /// of the last bar it reflects.
    pub fn save_strategy_state(
        &self,
        instance: &str,
        state: &[u8],
        last_bar: Millis,
        time: Millis,
    ) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO strategy_states (instance, state, last_bar_ms, saved_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (instance) DO UPDATE SET state = excluded.state, last_bar_ms = excluded.last_bar_ms,
                saved_ms = excluded.saved_ms",
            params![instance, state, last_bar, time],
        )
        .map_err(sql("saving a strategy's state"))?;
        Ok(())
    }

    /// The saved state and the time of the last bar it reflects.
    pub fn strategy_state(&self, instance: &str) -> Result<Option<(Vec<u8>, Millis)>, StoreError> {
        let conn = self.lock();
        conn.query_row("SELECT state, last_bar_ms FROM strategy_states WHERE instance = ?1", params![instance], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(sql("reading a strategy's state"))
    }

    /// Records a webhook delivery; `false` if this route saw the key before.
    pub fn first_delivery(&self, route: &str, key: &str, time: Millis) -> Result<bool, StoreError> {
        let conn = self.lock();
        let inserted = conn
            .execute(
                "INSERT OR IGNORE INTO webhook_deliveries (route, key, received_ms) VALUES (?1, ?2, ?3)",
                params![route, key, time],
            )
            .map_err(sql("recording a webhook delivery"))?;
        Ok(inserted == 1)
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

    /// The highest intent number routed for `strategy`, or 0.
    pub fn last_intent(&self, strategy: &str) -> Result<u64, StoreError> {
        let conn = self.lock();
        let last: Option<i64> = conn
            .query_row(
                "SELECT MAX(intent) FROM orders WHERE strategy = ?1 AND intent < ?2",
                params![strategy, crate::engine::EXTERNAL_INTENTS as i64],
                |r| r.get(0),
            )
            .map_err(sql("reading the last intent"))?;
        Ok(last.unwrap_or(0).max(0) as u64)
    }

    /// The highest external (webhook) intent number routed for `strategy`.
    pub fn last_external_intent(&self, strategy: &str) -> Result<u64, StoreError> {
        let conn = self.lock();
        let last: Option<i64> = conn
            .query_row(
                "SELECT MAX(intent) FROM orders WHERE strategy = ?1 AND intent >= ?2",
                params![strategy, crate::engine::EXTERNAL_INTENTS as i64],
                |r| r.get(0),
            )
            .map_err(sql("reading the last external intent"))?;
        Ok(last.unwrap_or(0).max(0) as u64)
    }

    /// Orders at `venue` that may still trade, oldest first.
    pub fn open_orders(&self, venue: &str) -> Result<Vec<OrderRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "{ORDER_COLUMNS} WHERE venue = ?1 AND status IN ('pending', 'accepted', 'partially_filled', 'unknown') ORDER BY created_ms, client_order_id"
            ))
            .map_err(sql("reading open orders"))?;
        let rows = stmt.query_map(params![venue], raw_order).map_err(sql("reading open orders"))?;
        let raw: Vec<RawOrder> = rows.collect::<Result<_, _>>().map_err(sql("reading open orders"))?;
        raw.into_iter().map(order_from_raw).collect()
    }

    /// Applies a fill exactly once: the fill, the order's filled quantity
    /// and the position move together or not at all. Returns `false` if the
    /// fill was already recorded.
    pub fn record_fill(&self, fill: &FillRecord) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(sql("starting a fill"))?;
        let inserted = tx
            .execute(
                "INSERT OR IGNORE INTO fills (venue, fill_id, client_order_id, symbol, side, qty, price, commission, time_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    fill.venue,
                    fill.fill_id,
                    fill.client_order_id,
                    fill.symbol,
                    side_text(fill.side),
                    fill.qty.to_string(),
                    fill.price.to_string(),
                    fill.commission.to_string(),
                    fill.time,
                ],
            )
            .map_err(sql("recording a fill"))?;
        if inserted == 0 {
            return Ok(false);
        }
        let filled: Option<String> = tx
            .query_row("SELECT filled_qty FROM orders WHERE client_order_id = ?1", params![fill.client_order_id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql("reading the filled quantity"))?;
        if let Some(filled) = filled {
            let total = decimal("filled quantity", &filled)? + fill.qty;
            tx.execute(
                "UPDATE orders SET filled_qty = ?2, updated_ms = ?3 WHERE client_order_id = ?1",
                params![fill.client_order_id, total.to_string(), fill.time],
            )
            .map_err(sql("updating the filled quantity"))?;
        }
        move_position(&tx, fill)?;
        append(&tx, fill.time, "fill", Some(&fill.venue), &fill_json(fill))?;
        tx.commit().map_err(sql("committing a fill"))?;
        Ok(true)
    }

    pub fn positions(&self, venue: &str) -> Result<Vec<PositionRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT venue, symbol, qty, avg_price FROM positions WHERE venue = ?1 AND qty != '0' ORDER BY symbol",
            )
            .map_err(sql("reading positions"))?;
        let rows = stmt
            .query_map(params![venue], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?))
            })
            .map_err(sql("reading positions"))?;
        let raw: Vec<_> = rows.collect::<Result<_, _>>().map_err(sql("reading positions"))?;
        raw.into_iter()
            .map(|(venue, symbol, qty, avg)| {
                Ok(PositionRecord {
                    venue,
                    symbol,
                    qty: decimal("position", &qty)?,
                    avg_price: decimal("average price", &avg)?,
                })
            })
            .collect()
    }

    /// Adopts the broker's position and journals the correction, atomically.
    pub fn correct_position(&self, position: &PositionRecord, time: Millis, journal: &str) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(sql("starting a position correction"))?;
        tx.execute(
            "INSERT INTO positions (venue, symbol, qty, avg_price, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (venue, symbol) DO UPDATE SET qty = excluded.qty, avg_price = excluded.avg_price, updated_ms = excluded.updated_ms",
            params![position.venue, position.symbol, position.qty.to_string(), position.avg_price.to_string(), time],
        )
        .map_err(sql("correcting a position"))?;
        append(&tx, time, "position.corrected", Some(&position.venue), journal)?;
        tx.commit().map_err(sql("committing a position correction"))
    }
}

fn append(conn: &Connection, time: Millis, kind: &str, venue: Option<&str>, data: &str) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO events (time_ms, kind, venue, data) VALUES (?1, ?2, ?3, ?4)",
        params![time, kind, venue, data],
    )
    .map_err(sql("appending to the journal"))?;
    Ok(conn.last_insert_rowid())
}

fn move_position(tx: &Transaction<'_>, fill: &FillRecord) -> Result<(), StoreError> {
    let current: Option<(String, String)> = tx
        .query_row(
            "SELECT qty, avg_price FROM positions WHERE venue = ?1 AND symbol = ?2",
            params![fill.venue, fill.symbol],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(sql("reading a position"))?;
    let (qty, avg) = match current {
        Some((q, a)) => (decimal("position", &q)?, decimal("average price", &a)?),
        None => (Decimal::ZERO, Decimal::ZERO),
    };
    let signed = fill.side.sign() * fill.qty;
    let new_qty = qty + signed;
    let new_avg = if new_qty.is_zero() {
        Decimal::ZERO
    } else if qty.is_zero() || qty.is_sign_positive() == signed.is_sign_positive() {
        (avg * qty.abs() + fill.price * fill.qty) / new_qty.abs()
    } else if new_qty.is_sign_positive() == qty.is_sign_positive() {
        avg
    } else {
        fill.price
    };
    tx.execute(
        "INSERT INTO positions (venue, symbol, qty, avg_price, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (venue, symbol) DO UPDATE SET qty = excluded.qty, avg_price = excluded.avg_price, updated_ms = excluded.updated_ms",
        params![fill.venue, fill.symbol, new_qty.to_string(), new_avg.to_string(), fill.time],
    )
    .map_err(sql("moving a position"))?;
    Ok(())
}

fn fill_json(fill: &FillRecord) -> String {
    serde_json::json!({
        "fill_id": fill.fill_id,
        "client_order_id": fill.client_order_id,
        "symbol": fill.symbol,
        "side": side_text(fill.side),
        "qty": fill.qty.to_string(),
        "price": fill.price.to_string(),
        "commission": fill.commission.to_string(),
    })
    .to_string()
}

fn side_text(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

fn decimal(what: &'static str, text: &str) -> Result<Decimal, StoreError> {
    Decimal::from_str(text).map_err(|_| StoreError::Corrupt { what, value: text.to_string() })
}

const ORDER_COLUMNS: &str =
    "SELECT client_order_id, venue, strategy, intent, symbol, side, qty, order_type, limit_price,
    time_in_force, status, venue_order_id, filled_qty, created_ms, updated_ms FROM orders";

/// An order row before its text columns are parsed.
type RawOrder = (
    String,
    String,
    String,
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    Option<String>,
    String,
    i64,
    i64,
);

fn raw_order(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawOrder> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
        r.get(12)?,
        r.get(13)?,
        r.get(14)?,
    ))
}

fn order_from_raw(raw: RawOrder) -> Result<OrderRecord, StoreError> {
    let (
        client_order_id,
        venue,
        strategy,
        intent,
        symbol,
        side,
        qty,
        order_type,
        limit,
        tif,
        status,
        venue_id,
        filled,
        created,
        updated,
    ) = raw;
    let side = match side.as_str() {
        "buy" => Side::Buy,
        "sell" => Side::Sell,
        _ => return Err(StoreError::Corrupt { what: "side", value: side }),
    };
    Ok(OrderRecord {
        client_order_id,
        venue,
        strategy,
        intent: u64::try_from(intent).map_err(|_| StoreError::Corrupt { what: "intent", value: intent.to_string() })?,
        symbol,
        side,
        qty: decimal("quantity", &qty)?,
        order_type,
        limit_price: limit.as_deref().map(|p| decimal("limit price", p)).transpose()?,
        time_in_force: tif,
        status,
        venue_order_id: venue_id,
        filled_qty: decimal("filled quantity", &filled)?,
        created,
        updated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(coid: &str) -> OrderRecord {
        OrderRecord {
            client_order_id: coid.into(),
            venue: "alpaca".into(),
            strategy: "sma".into(),
            intent: 1,
            symbol: "AAPL".into(),
            side: Side::Buy,
            qty: Decimal::from(10),
            order_type: "market".into(),
            limit_price: None,
            time_in_force: "day".into(),
            status: "pending".into(),
            venue_order_id: None,
            filled_qty: Decimal::ZERO,
            created: 1,
            updated: 1,
        }
    }

    fn fill(id: &str, side: Side, qty: i64, price: &str) -> FillRecord {
        FillRecord {
            venue: "alpaca".into(),
            fill_id: id.into(),
            client_order_id: "c1".into(),
            symbol: "AAPL".into(),
            side,
            qty: Decimal::from(qty),
            price: price.parse().unwrap(),
            commission: Decimal::ZERO,
            time: 5,
        }
    }

    #[test]
    fn migrates_once_and_persists_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let store = Store::open(&path).unwrap();
            assert!(store.insert_order(&order("c1")).unwrap());
            store.append_event(1, "hello", None, "{}").unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.order("c1").unwrap().unwrap(), order("c1"));
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
    fn orders_are_persisted_once_per_client_order_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        assert!(store.insert_order(&order("c1")).unwrap());
        assert!(!store.insert_order(&order("c1")).unwrap(), "a second insert is refused, not duplicated");
        assert_eq!((store.last_intent("sma").unwrap(), store.last_intent("other").unwrap()), (1, 0));
        store.update_order("c1", "accepted", Some("v-1"), 2).unwrap();
        let open = store.open_orders("alpaca").unwrap();
        assert_eq!(
            (open.len(), open[0].status.as_str(), open[0].venue_order_id.as_deref()),
            (1, "accepted", Some("v-1"))
        );
        store.update_order("c1", "filled", None, 3).unwrap();
        assert!(store.open_orders("alpaca").unwrap().is_empty());
        assert_eq!(store.order("c1").unwrap().unwrap().venue_order_id.as_deref(), Some("v-1"));
    }

    #[test]
    fn a_fill_applies_exactly_once_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        store.insert_order(&order("c1")).unwrap();
        assert!(store.record_fill(&fill("f1", Side::Buy, 4, "10")).unwrap());
        assert!(!store.record_fill(&fill("f1", Side::Buy, 4, "10")).unwrap(), "a replayed fill changes nothing");
        assert!(store.record_fill(&fill("f2", Side::Buy, 6, "20")).unwrap());
        let pos = &store.positions("alpaca").unwrap()[0];
        assert_eq!((pos.qty, pos.avg_price), (Decimal::from(10), Decimal::from(16)));
        assert_eq!(store.order("c1").unwrap().unwrap().filled_qty, Decimal::from(10));
        assert!(store.record_fill(&fill("f3", Side::Sell, 10, "30")).unwrap());
        assert!(store.positions("alpaca").unwrap().is_empty(), "a flat position is not listed");
        let kinds: Vec<String> = store.events_after(0, 100).unwrap().into_iter().map(|e| e.kind).collect();
        assert_eq!(kinds, vec!["fill", "fill", "fill"]);
    }

    #[test]
    fn strategy_state_is_kept_per_instance() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        assert_eq!(store.strategy_state("sma@alpaca").unwrap(), None);
        store.save_strategy_state("sma@alpaca", b"one", 10, 1).unwrap();
        store.save_strategy_state("sma@alpaca", b"two", 20, 2).unwrap();
        assert_eq!(store.strategy_state("sma@alpaca").unwrap(), Some((b"two".to_vec(), 20)));
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

    #[test]
    fn cursors_only_move_forward() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        assert_eq!(store.cursor("alpaca", "AAPL").unwrap(), None);
        assert!(store.advance_cursor("alpaca", "AAPL", 100).unwrap());
        assert!(!store.advance_cursor("alpaca", "AAPL", 100).unwrap());
        assert!(!store.advance_cursor("alpaca", "AAPL", 50).unwrap());
        assert!(store.advance_cursor("alpaca", "AAPL", 160).unwrap());
        assert_eq!(store.cursor("alpaca", "AAPL").unwrap(), Some(160));
        assert_eq!(store.cursor("binance", "AAPL").unwrap(), None);
    }

    #[test]
    fn corrections_adopt_the_broker_and_are_journaled() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let truth = PositionRecord {
            venue: "alpaca".into(),
            symbol: "MSFT".into(),
            qty: Decimal::from(-3),
            avg_price: Decimal::from(400),
        };
        store.correct_position(&truth, 9, r#"{"was":"0"}"#).unwrap();
        assert_eq!(store.positions("alpaca").unwrap(), vec![truth]);
        let events = store.events_after(0, 10).unwrap();
        assert_eq!((events[0].kind.as_str(), events[0].data.as_str()), ("position.corrected", r#"{"was":"0"}"#));
    }
}
