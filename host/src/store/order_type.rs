//! How an order's type is stored: its name in `order_type`, its prices as
//! decimal text in `limit_price` (a limit's, or a stop-limit's limit) and
//! `stop_price` (a stop's or a stop-limit's stop).

use super::{StoreError, decimal};
use crate::order::OrderType;

/// The `order_type`, `limit_price` and `stop_price` columns of `order_type`.
pub(super) fn columns(order_type: OrderType) -> (&'static str, Option<String>, Option<String>) {
    let text = |price: Option<rust_decimal::Decimal>| price.map(|p| p.to_string());
    (order_type.name(), text(order_type.limit_price()), text(order_type.stop_price()))
}

/// Reads the columns back. Each type needs exactly its own prices; anything
/// else was not written by [`columns`].
pub(super) fn from_columns(name: &str, limit: Option<&str>, stop: Option<&str>) -> Result<OrderType, StoreError> {
    let limit = limit.map(|p| decimal("limit price", p)).transpose()?;
    let stop = stop.map(|p| decimal("stop price", p)).transpose()?;
    let order_type = OrderType::from_prices(limit, stop);
    if order_type.name() != name {
        let value = format!("{name} (limit price {limit:?}, stop price {stop:?})");
        return Err(StoreError::Corrupt { what: "order type", value });
    }
    Ok(order_type)
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;
    use crate::order::{OrderIntent, OrderStatus, Side};
    use crate::store::{OrderRecord, Store};

    fn d(text: &str) -> Decimal {
        text.parse().unwrap()
    }

    #[test]
    fn every_order_type_round_trips_through_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let types = [
            OrderType::Market,
            OrderType::Limit { price: d("101.25") },
            OrderType::Stop { stop: d("99.5") },
            OrderType::StopLimit { stop: d("101.5"), limit: d("102.00") },
        ];
        for (n, order_type) in (1..).zip(types) {
            let intent = OrderIntent { order_type, ..OrderIntent::market("AAPL".into(), Side::Sell, Decimal::ONE) };
            let record = OrderRecord::for_intent(
                "alpaca",
                "s@alpaca",
                crate::order::OrderRef::new(1, n),
                &intent,
                OrderStatus::Queued,
                1,
            );
            assert!(store.insert_order(&record).unwrap());
            let back = store.order(&record.client_order_id).unwrap().unwrap();
            assert_eq!(back, record, "{order_type}");
            assert_eq!(back.intent().order_type.to_string(), order_type.to_string(), "scale kept");
        }
        let queued: Vec<OrderType> = store.queued_orders("alpaca").unwrap().iter().map(|o| o.order_type).collect();
        assert_eq!(queued, types);
    }

    #[test]
    fn columns_that_do_not_fit_the_type_are_corrupt() {
        assert_eq!(from_columns("stop", None, Some("7")).unwrap(), OrderType::Stop { stop: d("7") });
        for (name, limit, stop) in [
            ("stop", Some("7"), None),
            ("stop_limit", Some("7"), None),
            ("stop_limit", None, Some("7")),
            ("limit", Some("7"), Some("8")),
            ("market", None, Some("8")),
            ("stop", None, Some("seven")),
            ("trailing_stop", None, Some("8")),
        ] {
            let err = from_columns(name, limit, stop).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt { .. }), "{name} {limit:?} {stop:?}");
        }
    }

    /// A database from before stop orders keeps its orders readable.
    #[test]
    fn orders_stored_before_stop_orders_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            let conn = rusqlite::Connection::open(&path).unwrap();
            let before = super::super::schema::MIGRATIONS.iter().position(|m| m.contains("stop_price")).unwrap();
            for migration in &super::super::schema::MIGRATIONS[..before] {
                conn.execute_batch(migration).unwrap();
            }
            conn.pragma_update(None, "user_version", before as i64).unwrap();
            conn.execute(
                "INSERT INTO orders (client_order_id, venue, strategy, intent, symbol, side, qty, order_type,
                    limit_price, time_in_force, status, filled_qty, created_ms, updated_ms)
                 VALUES ('c1', 'alpaca', 's', 1, 'AAPL', 'buy', '2', 'limit', '10.5', 'day', 'accepted', '0', 1, 1)",
                [],
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.order("c1").unwrap().unwrap().order_type, OrderType::Limit { price: d("10.5") });
    }
}
