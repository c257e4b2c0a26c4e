//! Orders, fills and positions: what was sent, what executed, what is held.

use rusqlite::{Connection, OptionalExtension, params};
use rust_decimal::Decimal;

use super::journal::append;
use super::order_type::{columns, from_columns};
use super::{Store, StoreError, decimal, sql};
use crate::bar::Millis;
use crate::order::{IntentId, OrderIntent, OrderRef, OrderStatus, OrderType, Side, TimeInForce};
use crate::router::client_order_id;

/// An order as the host knows it; `client_order_id` is its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRecord {
    pub client_order_id: String,
    pub venue: String,
    pub strategy: String,
    /// Which of the strategy's orders it is.
    pub intent: OrderRef,
    pub symbol: String,
    pub side: Side,
    pub qty: Decimal,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    pub status: OrderStatus,
    pub venue_order_id: Option<String>,
    pub filled_qty: Decimal,
    pub created: Millis,
    pub updated: Millis,
}

impl OrderRecord {
    /// The record of an approved intent of `strategy_instance`, keyed by its
    /// deterministic client order id.
    pub fn for_intent(
        venue: &str,
        strategy_instance: &str,
        intent_id: IntentId,
        intent: &OrderIntent,
        status: OrderStatus,
        now: Millis,
    ) -> Self {
        OrderRecord {
            client_order_id: client_order_id(strategy_instance, intent_id),
            venue: venue.into(),
            strategy: strategy_instance.into(),
            intent: intent_id,
            symbol: intent.symbol.to_string(),
            side: intent.side,
            qty: intent.qty,
            order_type: intent.order_type,
            time_in_force: intent.time_in_force,
            status,
            venue_order_id: None,
            filled_qty: Decimal::ZERO,
            created: now,
            updated: now,
        }
    }

    /// The intent this order carries out.
    pub fn intent(&self) -> OrderIntent {
        OrderIntent {
            symbol: self.symbol.as_str().into(),
            side: self.side,
            qty: self.qty,
            order_type: self.order_type,
            time_in_force: self.time_in_force,
        }
    }

    /// Whether the order may still trade.
    pub fn is_open(&self) -> bool {
        self.status.is_open()
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionRecord {
    pub venue: String,
    pub symbol: String,
    pub qty: Decimal,
    pub avg_price: Decimal,
}

impl Store {
    /// Persists a new order; returns `false` if one with the same client
    /// order id exists (the caller is retrying and must not send twice).
    pub fn insert_order(&self, order: &OrderRecord) -> Result<bool, StoreError> {
        insert(&self.lock(), order)
    }

    /// Orders of `venue` decided and committed by a strategy but never
    /// tried, in the order they were decided: the router's to send.
    pub fn queued_orders(&self, venue: &str) -> Result<Vec<OrderRecord>, StoreError> {
        self.queued_orders_up_to(venue, i64::MAX)
    }

    /// The first `limit` of [`Store::queued_orders`].
    pub fn queued_orders_up_to(&self, venue: &str, limit: i64) -> Result<Vec<OrderRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!("{ORDER_COLUMNS} WHERE venue = ?1 AND status = 'queued' ORDER BY rowid LIMIT ?2"))
            .map_err(sql("reading queued orders"))?;
        let rows = stmt.query_map(params![venue, limit], raw_order).map_err(sql("reading queued orders"))?;
        let raw: Vec<RawOrder> = rows.collect::<Result<_, _>>().map_err(sql("reading queued orders"))?;
        raw.into_iter().map(order_from_raw).collect()
    }

    /// Records what the venue says about an order's state. The filled
    /// quantity moves only with [`Store::record_fill`].
    pub fn update_order(
        &self,
        client_order_id: &str,
        status: OrderStatus,
        venue_order_id: Option<&str>,
        time: Millis,
    ) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "UPDATE orders SET status = ?2, venue_order_id = COALESCE(?3, venue_order_id), updated_ms = ?4
             WHERE client_order_id = ?1",
            params![client_order_id, status.as_str(), venue_order_id, time],
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

    /// The latest lifetime of `strategy` that placed an order or saved a
    /// state, or 0.
    pub fn last_lifetime(&self, strategy: &str) -> Result<u32, StoreError> {
        let conn = self.lock();
        let last: Option<i64> = conn
            .query_row(
                "SELECT MAX(lifetime) FROM (SELECT lifetime FROM orders WHERE strategy = ?1
                 UNION ALL SELECT lifetime FROM strategy_states WHERE instance = ?1)",
                params![strategy],
                |r| r.get(0),
            )
            .map_err(sql("reading the last lifetime"))?;
        Ok(u32::try_from(last.unwrap_or(0)).unwrap_or(u32::MAX))
    }

    /// The ids `strategy`'s orders of `lifetime` used.
    pub fn order_ids(&self, strategy: &str, lifetime: u32) -> Result<Vec<u64>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT intent FROM orders WHERE strategy = ?1 AND lifetime = ?2")
            .map_err(sql("reading order ids"))?;
        let rows =
            stmt.query_map(params![strategy, lifetime], |r| r.get::<_, i64>(0)).map_err(sql("reading order ids"))?;
        rows.map(|id| id.map(|id| id as u64).map_err(sql("reading order ids"))).collect()
    }

    /// The highest external (webhook) order id routed for `strategy`, or 0.
    pub fn last_external_intent(&self, strategy: &str) -> Result<u64, StoreError> {
        let conn = self.lock();
        let last: Option<i64> = conn
            .query_row(
                "SELECT MAX(intent) FROM orders WHERE strategy = ?1 AND lifetime = ?2",
                params![strategy, OrderRef::EXTERNAL],
                |r| r.get(0),
            )
            .map_err(sql("reading the last external order id"))?;
        Ok(last.unwrap_or(0).max(0) as u64)
    }

    /// Orders at `venue` that may still trade or whose fate is not yet
    /// known, in the order they were decided (by intent number, never by
    /// the text of their ids).
    pub fn open_orders(&self, venue: &str) -> Result<Vec<OrderRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(&format!(
                "{ORDER_COLUMNS} WHERE venue = ?1 AND status IN ('pending', 'accepted', 'partially_filled', 'unknown')
                 ORDER BY rowid"
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
                "INSERT OR IGNORE INTO fills (venue, fill_id, client_order_id, symbol, side, qty, price, commission, time_ms,
                    delivered)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0)",
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
        super::positions::move_position(&tx, fill)?;
        append(&tx, fill.time, "fill", Some(&fill.venue), &fill_json(fill))?;
        tx.commit().map_err(sql("committing a fill"))?;
        Ok(true)
    }

    /// Fills of `venue` whose strategy has not yet been told of them (see
    /// [`Store::commit_input`]), in the order their strategy decided the
    /// orders, and in the order they were recorded within one order.
    pub fn undelivered_fills(&self, venue: &str) -> Result<Vec<FillRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT f.venue, f.fill_id, f.client_order_id, f.symbol, f.side, f.qty, f.price, f.commission, f.time_ms
                 FROM fills f LEFT JOIN orders o ON o.client_order_id = f.client_order_id
                 WHERE f.venue = ?1 AND f.delivered = 0 ORDER BY o.strategy, o.rowid, f.rowid",
            )
            .map_err(sql("reading undelivered fills"))?;
        let rows = stmt.query_map(params![venue], |r| raw_fill(r, 0)).map_err(sql("reading undelivered fills"))?;
        let raw: Vec<RawFill> = rows.collect::<Result<_, _>>().map_err(sql("reading undelivered fills"))?;
        raw.into_iter().map(fill_from_raw).collect()
    }

    /// Marks fills of `venue` as told to their strategy.
    pub fn mark_delivered(&self, venue: &str, fill_ids: &[String]) -> Result<(), StoreError> {
        mark_delivered(&self.lock(), venue, fill_ids)
    }
}

/// Marks fills of `venue` as told to their strategy.
pub(super) fn mark_delivered(conn: &Connection, venue: &str, fill_ids: &[String]) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare_cached("UPDATE fills SET delivered = 1 WHERE venue = ?1 AND fill_id = ?2")
        .map_err(sql("marking fills delivered"))?;
    for fill_id in fill_ids {
        stmt.execute(params![venue, fill_id]).map_err(sql("marking fills delivered"))?;
    }
    Ok(())
}

/// Inserts `order` unless its client order id exists; `true` if inserted.
pub(super) fn insert(conn: &Connection, order: &OrderRecord) -> Result<bool, StoreError> {
    let (order_type, limit_price, stop_price) = columns(order.order_type);
    let inserted = conn
        .execute(
            "INSERT OR IGNORE INTO orders (client_order_id, venue, strategy, intent, symbol, side, qty, order_type,
                    limit_price, time_in_force, status, venue_order_id, filled_qty, created_ms, updated_ms, lifetime, stop_price)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
            params![
                order.client_order_id,
                order.venue,
                order.strategy,
                // Ids are any u64; SQLite keeps them as their i64 bits.
                order.intent.id as i64,
                order.symbol,
                side_text(order.side),
                order.qty.to_string(),
                order_type,
                limit_price,
                tif_text(order.time_in_force),
                order.status.as_str(),
                order.venue_order_id,
                order.filled_qty.to_string(),
                order.created,
                order.updated,
                order.intent.lifetime,
                stop_price,
            ],
        )
        .map_err(sql("persisting an order"))?;
    Ok(inserted == 1)
}

/// A fill row's columns as text, from column `at` on: venue, fill id,
/// client order id, symbol, side, qty, price, commission, time.
pub(super) type RawFill = (String, String, String, String, String, String, String, String, Millis);

pub(super) fn raw_fill(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<RawFill> {
    Ok((
        r.get(at)?,
        r.get(at + 1)?,
        r.get(at + 2)?,
        r.get(at + 3)?,
        r.get(at + 4)?,
        r.get(at + 5)?,
        r.get(at + 6)?,
        r.get(at + 7)?,
        r.get(at + 8)?,
    ))
}

pub(super) fn fill_from_raw(raw: RawFill) -> Result<FillRecord, StoreError> {
    let (venue, fill_id, client_order_id, symbol, side, qty, price, commission, time) = raw;
    Ok(FillRecord {
        venue,
        fill_id,
        client_order_id,
        symbol,
        side: side_from_text(&side)?,
        qty: decimal("fill quantity", &qty)?,
        price: decimal("fill price", &price)?,
        commission: decimal("commission", &commission)?,
        time,
    })
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

const TIME_IN_FORCE: [(TimeInForce, &str); 4] =
    [(TimeInForce::Day, "day"), (TimeInForce::Gtc, "gtc"), (TimeInForce::Ioc, "ioc"), (TimeInForce::Fok, "fok")];

fn tif_text(tif: TimeInForce) -> &'static str {
    TIME_IN_FORCE.iter().find(|(t, _)| *t == tif).map_or("day", |(_, text)| text)
}

fn tif_from_text(text: &str) -> Result<TimeInForce, StoreError> {
    TIME_IN_FORCE
        .iter()
        .find(|(_, t)| *t == text)
        .map(|(tif, _)| *tif)
        .ok_or_else(|| StoreError::Corrupt { what: "time in force", value: text.to_string() })
}

fn side_text(side: Side) -> &'static str {
    match side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    }
}

pub(super) fn side_from_text(side: &str) -> Result<Side, StoreError> {
    match side {
        "buy" => Ok(Side::Buy),
        "sell" => Ok(Side::Sell),
        _ => Err(StoreError::Corrupt { what: "side", value: side.to_string() }),
    }
}

const ORDER_COLUMNS: &str =
    "SELECT client_order_id, venue, strategy, intent, symbol, side, qty, order_type, limit_price,
    time_in_force, status, venue_order_id, filled_qty, created_ms, updated_ms, lifetime, stop_price FROM orders";

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
    u32,
    Option<String>,
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
        r.get(15)?,
        r.get(16)?,
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
        lifetime,
        stop,
    ) = raw;
    let side = side_from_text(&side)?;
    Ok(OrderRecord {
        client_order_id,
        venue,
        strategy,
        intent: OrderRef::new(lifetime, intent as u64),
        symbol,
        side,
        qty: decimal("quantity", &qty)?,
        order_type: from_columns(&order_type, limit.as_deref(), stop.as_deref())?,
        time_in_force: tif_from_text(&tif)?,
        status: OrderStatus::parse(&status).ok_or(StoreError::Corrupt { what: "order status", value: status })?,
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
            intent: OrderRef::new(1, 1),
            symbol: "AAPL".into(),
            side: Side::Buy,
            qty: Decimal::from(10),
            order_type: OrderType::Market,
            time_in_force: TimeInForce::Day,
            status: OrderStatus::Pending,
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
    fn orders_are_persisted_once_per_client_order_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        assert!(store.insert_order(&order("c1")).unwrap());
        assert!(!store.insert_order(&order("c1")).unwrap(), "a second insert is refused, not duplicated");
        assert_eq!((store.last_lifetime("sma").unwrap(), store.last_lifetime("other").unwrap()), (1, 0));
        assert_eq!(store.order_ids("sma", 1).unwrap(), [1]);
        store.update_order("c1", OrderStatus::Accepted, Some("v-1"), 2).unwrap();
        let open = store.open_orders("alpaca").unwrap();
        assert_eq!(
            (open.len(), open[0].status, open[0].venue_order_id.as_deref()),
            (1, OrderStatus::Accepted, Some("v-1"))
        );
        store.update_order("c1", OrderStatus::Filled, None, 3).unwrap();
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
    fn a_fill_waits_to_be_told_until_an_input_commits_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        store.insert_order(&order("c1")).unwrap();
        store.record_fill(&fill("f1", Side::Buy, 4, "10")).unwrap();
        store.record_fill(&fill("f2", Side::Buy, 6, "20")).unwrap();
        let waiting: Vec<String> = store.undelivered_fills("alpaca").unwrap().into_iter().map(|f| f.fill_id).collect();
        assert_eq!(waiting, ["f1", "f2"]);
        assert_eq!(store.undelivered_fills("alpaca").unwrap()[1], fill("f2", Side::Buy, 6, "20"));
        let told = super::super::Told { venue: "alpaca", fills: &["f1".to_string()], webhooks: &[] };
        store.commit_input("sma@alpaca", None, 0, &[], Some(told), 5).unwrap();
        let waiting: Vec<String> = store.undelivered_fills("alpaca").unwrap().into_iter().map(|f| f.fill_id).collect();
        assert_eq!(waiting, ["f2"]);
        store.mark_delivered("alpaca", &["f2".to_string()]).unwrap();
        assert!(store.undelivered_fills("alpaca").unwrap().is_empty());
    }

    /// A strategy picks its ids in any order, and their text sorts in yet
    /// another; orders and fills must come in the order it decided them.
    #[test]
    fn orders_and_fills_come_in_decision_order_not_id_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let intent = OrderIntent::market("AAPL".into(), Side::Buy, Decimal::ONE);
        let intents = [8, 9, 100, 10, 11];
        for n in intents {
            let order = OrderRef::new(1, n);
            let record = OrderRecord::for_intent("alpaca", "sma@alpaca", order, &intent, OrderStatus::Accepted, 1);
            store.insert_order(&record).unwrap();
        }
        let open: Vec<u64> = store.open_orders("alpaca").unwrap().iter().map(|o| o.intent.id).collect();
        assert_eq!(open, intents);
        // Recorded in another order (e.g. as a sync saw them).
        for n in [100, 10, 8, 11, 9] {
            let fill = FillRecord {
                fill_id: format!("f{n}"),
                client_order_id: client_order_id("sma@alpaca", OrderRef::new(1, n)),
                ..fill("x", Side::Buy, 1, "1")
            };
            store.record_fill(&fill).unwrap();
        }
        let told: Vec<String> = store.undelivered_fills("alpaca").unwrap().into_iter().map(|f| f.fill_id).collect();
        assert_eq!(told, ["f8", "f9", "f100", "f10", "f11"]);
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
