//! Accepted deliveries, from the store's inbox to the strategies.
//!
//! The intake writes each accepted delivery into the inbox, payload
//! included, in the transaction that records its dedup key, one row per
//! strategy it is for. The dispatcher reads the inbox oldest first, hands
//! each row to its strategy's input queue, and deletes the row right after
//! the handover, with no await in between. At start the rows left over are
//! simply read again. So each row is handed over once, except if the
//! process dies between a handover and the delete that follows it (then
//! it is handed over again after the restart). What was handed over lives
//! in the engine's in-memory queue until the engine takes it, as bars do;
//! see the README ("Webhooks in") for what a crash means there.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::AlertOrder;
use crate::bar::{Millis, now_ms};
use crate::order::{OrderType, Side};
use crate::store::{InboxItem, Store, StoreError};

/// Something an accepted delivery asks of one strategy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// Deliver `payload` to the strategy's `on-signal`.
    Signal { route: String, strategy: String, payload: String },
    /// Place an order for the strategy, through the usual risk checks.
    Order { route: String, strategy: String, order: AlertOrder },
}

/// How an [`Inbound`] is kept in the inbox row's `inbound` column.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase", deny_unknown_fields)]
enum Stored {
    Signal {
        payload: String,
    },
    Order {
        symbol: String,
        side: String,
        qty: String,
        limit_price: Option<String>,
        /// Absent from rows without a stop, so they read as before stop
        /// orders; the prices present give the type (see `OrderType::from_prices`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stop_price: Option<String>,
        order_id: Option<String>,
    },
}

/// An inbox row that cannot be read back (written by another build, or damaged).
#[derive(Debug, thiserror::Error)]
#[error("webhook inbox row {id} cannot be read")]
pub struct DecodeError {
    pub id: i64,
    #[source]
    pub source: DecodeCause,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeCause {
    #[error("not the JSON this build writes")]
    Json(#[from] serde_json::Error),
    #[error("bad {field}: {value:?}")]
    Field { field: &'static str, value: String },
}

impl Inbound {
    /// The text kept in the inbox for this delivery.
    pub(super) fn encode(&self) -> String {
        let stored = match self {
            Inbound::Signal { payload, .. } => Stored::Signal { payload: payload.clone() },
            Inbound::Order { order, .. } => Stored::Order {
                symbol: order.symbol.clone(),
                side: order.side.to_string(),
                qty: order.qty.to_string(),
                limit_price: order.order_type.limit_price().map(|p| p.to_string()),
                stop_price: order.order_type.stop_price().map(|p| p.to_string()),
                order_id: order.order_id.clone(),
            },
        };
        // A tagged enum of strings always serializes.
        serde_json::to_string(&stored).unwrap_or_default()
    }

    /// The strategy it is for.
    pub fn strategy(&self) -> &str {
        match self {
            Inbound::Signal { strategy, .. } | Inbound::Order { strategy, .. } => strategy,
        }
    }

    /// Reads an inbox row back.
    pub fn decode(item: &InboxItem) -> Result<Self, DecodeError> {
        let fail = |source: DecodeCause| DecodeError { id: item.id, source };
        let stored: Stored = serde_json::from_str(&item.inbound).map_err(|e| fail(e.into()))?;
        let (route, strategy) = (item.route.clone(), item.strategy.clone());
        Ok(match stored {
            Stored::Signal { payload } => Inbound::Signal { route, strategy, payload },
            Stored::Order { symbol, side, qty, limit_price, stop_price, order_id } => {
                let bad = |field, value: &str| fail(DecodeCause::Field { field, value: value.to_string() });
                let side = match side.as_str() {
                    "buy" => Side::Buy,
                    "sell" => Side::Sell,
                    _ => return Err(bad("side", &side)),
                };
                let qty: Decimal = qty.parse().map_err(|_| bad("qty", &qty))?;
                let price = |field, text: Option<String>| match text {
                    Some(p) => p.parse::<Decimal>().map(Some).map_err(|_| bad(field, &p)),
                    None => Ok(None),
                };
                let order_type =
                    OrderType::from_prices(price("limit_price", limit_price)?, price("stop_price", stop_price)?);
                Inbound::Order { route, strategy, order: AlertOrder { symbol, side, qty, order_id, order_type } }
            }
        })
    }
}

/// What became of one handover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handed {
    /// The strategy's queue took it.
    Over,
    /// No such strategy runs (the config changed); it can never be handed over.
    NoStrategy,
    /// The strategy's queue is closed: the host is stopping. Left in the inbox.
    Closed,
}

/// Rows read from the inbox per round.
const ROUND: usize = 64;
/// How often an idle dispatcher looks anyway.
const IDLE: Duration = Duration::from_secs(1);
/// How often dedup keys past their window are pruned.
const PRUNE_EVERY: Millis = 60_000;

/// Hands inbox rows over with `hand` (row id and delivery) until a queue
/// closes; `wake` is notified by the intake on each accepted delivery.
///
/// With `engines_commit`, a row stays in the inbox until the engine that
/// took it commits the input it became, in one transaction with the
/// strategy's state ([`crate::store::Told`]): each delivery is acted on
/// exactly once across crashes, as fills are told. The dispatcher moves
/// past what it handed over, and a restart hands over again what no engine
/// committed. Without it (strategies that keep no state), a row is done
/// once its engine's queue has it.
pub async fn run_dispatcher<F, Fut>(
    store: Arc<Store>,
    wake: Arc<Notify>,
    engines_commit: bool,
    mut hand: F,
) -> Result<(), StoreError>
where
    F: FnMut(i64, Inbound) -> Fut,
    Fut: Future<Output = Handed>,
{
    let mut pruned_at: Millis = Millis::MIN;
    // The last row handed over (or given up on).
    let mut cursor = 0;
    loop {
        let now = now_ms();
        if now.saturating_sub(pruned_at) >= PRUNE_EVERY {
            let pruned = store.prune_delivery_keys(now)?;
            if pruned > 0 {
                tracing::debug!(pruned, "webhook dedup keys past their window forgotten");
            }
            pruned_at = now;
        }
        let items = store.waiting_deliveries(cursor, ROUND)?;
        if items.is_empty() {
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep(IDLE) => {}
            }
            continue;
        }
        for item in items {
            let handed = match Inbound::decode(&item) {
                Ok(inbound) => hand(item.id, inbound).await,
                Err(error) => {
                    tracing::error!(%error, route = %item.route, "webhook delivery dropped");
                    Handed::NoStrategy
                }
            };
            match handed {
                Handed::Closed => return Ok(()),
                // The engine marks it done when it commits.
                Handed::Over if engines_commit => {}
                // No await between the handover and this.
                Handed::Over => store.delivery_done(item.id)?,
                Handed::NoStrategy => {
                    tracing::error!(route = %item.route, strategy = %item.strategy,
                        "webhook delivery for a strategy that is not running; dropped");
                    store.delivery_done(item.id)?;
                }
            }
            cursor = item.id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> Inbound {
        with_type(OrderType::Limit { price: "10.25".parse().unwrap() })
    }

    fn with_type(order_type: OrderType) -> Inbound {
        let order = AlertOrder {
            symbol: "AAPL".into(),
            side: Side::Sell,
            qty: "0.5".parse().unwrap(),
            order_id: Some("x\"y".into()),
            order_type,
        };
        Inbound::Order { route: "r".into(), strategy: "s".into(), order }
    }

    fn row(inbound: String) -> InboxItem {
        InboxItem { id: 1, route: "r".into(), key: "k".into(), strategy: "s".into(), received: 0, inbound }
    }

    #[test]
    fn every_order_type_reads_back_and_old_rows_still_read() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        for order_type in [
            OrderType::Market,
            OrderType::Limit { price: d("10.25") },
            OrderType::Stop { stop: d("9.5") },
            OrderType::StopLimit { stop: d("9.5"), limit: d("9.25") },
        ] {
            let item = row(with_type(order_type).encode());
            assert_eq!(Inbound::decode(&item).unwrap(), with_type(order_type), "{}", item.inbound);
            assert_eq!(item.inbound.contains("stop_price"), order_type.stop_price().is_some(), "{}", item.inbound);
        }
        // A row written before stop orders existed.
        let old =
            r#"{"action": "order", "symbol": "A", "side": "buy", "qty": "1", "limit_price": "2", "order_id": null}"#;
        let Inbound::Order { order, .. } = Inbound::decode(&row(old.into())).unwrap() else { panic!() };
        assert_eq!(order.order_type, OrderType::Limit { price: d("2") });
    }

    #[test]
    fn rows_read_back_as_written_and_damaged_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("i.db")).unwrap();
        let signal = Inbound::Signal { route: "r".into(), strategy: "s".into(), payload: "{\"a\": 1}".into() };
        let rows = [("s".to_string(), order().encode()), ("s".to_string(), signal.encode())];
        store.accept_delivery("r", "k", 0, 1, &rows, 10).unwrap();
        let back: Vec<Inbound> =
            store.waiting_deliveries(0, 10).unwrap().iter().map(|i| Inbound::decode(i).unwrap()).collect();
        assert_eq!(back, [order(), signal]);
        for damaged in [
            "",
            "{}",
            r#"{"action": "order", "symbol": "A", "side": "hold", "qty": "1"}"#,
            r#"{"action": "order", "symbol": "A", "side": "buy", "qty": "lots"}"#,
            r#"{"action": "order", "symbol": "A", "side": "buy", "qty": "1", "stop_price": "soon"}"#,
            r#"{"action": "wire"}"#,
        ] {
            let item = InboxItem {
                id: 7,
                route: "r".into(),
                key: "k".into(),
                strategy: "s".into(),
                received: 0,
                inbound: damaged.into(),
            };
            let error = Inbound::decode(&item).unwrap_err();
            assert_eq!(error.id, 7, "{damaged}");
        }
    }

    #[tokio::test]
    async fn old_keys_are_pruned_even_while_deliveries_wait() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("i.db")).unwrap());
        for key in ["a", "b"] {
            // Keys whose window ended long ago; the rows still wait.
            store.accept_delivery("r", key, 0, 1, &[("s".into(), order().encode())], 10).unwrap();
        }
        assert_eq!(store.delivery_keys().unwrap(), 2);
        run_dispatcher(store.clone(), Arc::new(Notify::new()), true, |_, _| async { Handed::Closed }).await.unwrap();
        assert_eq!(store.delivery_keys().unwrap(), 0);
        assert_eq!(store.waiting_deliveries(0, 10).unwrap().len(), 2, "a closed queue leaves the rows");
    }

    /// A delivery handed to an engine that commits stays in the inbox until
    /// that commit: a crash in between hands it over again, and a commit
    /// makes it done, once.
    #[tokio::test]
    async fn a_delivery_is_done_only_when_its_engine_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("i.db")).unwrap());
        for key in ["a", "b", "c"] {
            store.accept_delivery("r", key, 0, 1_000_000, &[("s".into(), order().encode())], 10).unwrap();
        }
        // A first run hands all three over, then its queue closes (the
        // process dies) before any engine committed.
        let handed = std::sync::Mutex::new(Vec::new());
        let run = run_dispatcher(store.clone(), Arc::new(Notify::new()), true, |id, _| {
            let mut handed = handed.lock().unwrap();
            handed.push(id);
            let closed = handed.len() > 3;
            async move { if closed { Handed::Closed } else { Handed::Over } }
        });
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), run).await;
        let first: Vec<i64> = handed.lock().unwrap().drain(..).collect();
        assert_eq!(first.len(), 3, "each handed over once, not again while uncommitted: {first:?}");
        assert_eq!(store.waiting_deliveries(0, 10).unwrap().len(), 3, "nothing committed, nothing done");

        // The engine commits the first; a restart hands over only the rest.
        let told = crate::store::Told { venue: "v", fills: &[], webhooks: &first[..1] };
        store.commit_input("s@v", None, 0, &[], Some(told), 5).unwrap();
        let again = std::sync::Mutex::new(Vec::new());
        let run = run_dispatcher(store.clone(), Arc::new(Notify::new()), true, |id, _| {
            again.lock().unwrap().push(id);
            async { Handed::Over }
        });
        let _ = tokio::time::timeout(std::time::Duration::from_millis(300), run).await;
        assert_eq!(*again.lock().unwrap(), first[1..]);
    }
}
