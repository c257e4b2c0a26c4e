//! What lets the host pick up where it left off: feed cursors, strategy
//! states and the keys of webhook deliveries already taken.

use rusqlite::{OptionalExtension, params};

use super::orders::{insert, mark_delivered};
use super::{OrderRecord, Store, StoreError, sql};
use crate::bar::Millis;

/// What one input told a strategy of, marked so with the input's commit:
/// fills of `venue` by fill id, and webhook deliveries by inbox row.
#[derive(Debug, Clone, Copy)]
pub struct Told<'a> {
    pub venue: &'a str,
    pub fills: &'a [String],
    pub webhooks: &'a [i64],
}

/// A strategy's state as last saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedState {
    pub state: Vec<u8>,
    /// Time of the last bar the state reflects.
    pub last_bar: Millis,
    /// The lifetime of the instance that saved it (see
    /// [`crate::order::OrderRef`]).
    pub lifetime: u32,
}

impl Store {
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

    /// Commits what one engine input decided, in one transaction: the
    /// orders it placed (as `queued`, for the router), what it told the
    /// strategy of (fills, webhook deliveries), and, unless the
    /// strategy could not save it, its state with the time of the last bar
    /// it reflects and the instance's lifetime. A crash leaves either all
    /// of it or none.
    pub fn commit_input(
        &self,
        instance: &str,
        state: Option<(&[u8], Millis)>,
        lifetime: u32,
        orders: &[OrderRecord],
        told: Option<Told<'_>>,
        time: Millis,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(sql("starting to commit an input"))?;
        for order in orders {
            insert(&tx, order)?;
        }
        if let Some(told) = told {
            mark_delivered(&tx, told.venue, told.fills)?;
            let mut done = tx
                .prepare_cached("DELETE FROM webhook_inbox WHERE id = ?1")
                .map_err(sql("marking webhook deliveries done"))?;
            for id in told.webhooks {
                done.execute(params![id]).map_err(sql("marking webhook deliveries done"))?;
            }
        }
        if let Some((state, last_bar)) = state {
            tx.execute(
                "INSERT INTO strategy_states (instance, state, last_bar_ms, saved_ms, lifetime)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (instance) DO UPDATE SET state = excluded.state, last_bar_ms = excluded.last_bar_ms,
                    saved_ms = excluded.saved_ms, lifetime = excluded.lifetime",
                params![instance, state, last_bar, time, lifetime],
            )
            .map_err(sql("saving a strategy's state"))?;
        }
        tx.commit().map_err(sql("committing an input"))
    }

    /// Counts bars up to `last_bar` as past instance `instance` without its
    /// state changing (they played past it while it was paused), so a
    /// restart does not hand them to it. Never moves the mark back.
    pub fn pass_bars(&self, instance: &str, last_bar: Millis) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute(
            "UPDATE strategy_states SET last_bar_ms = max(last_bar_ms, ?2) WHERE instance = ?1",
            params![instance, last_bar],
        )
        .map_err(sql("passing bars by a paused strategy"))?;
        Ok(())
    }

    /// The saved state and the time of the last bar it reflects.
    pub fn strategy_state(&self, instance: &str) -> Result<Option<SavedState>, StoreError> {
        let conn = self.lock();
        conn.query_row(
            "SELECT state, last_bar_ms, lifetime FROM strategy_states WHERE instance = ?1",
            params![instance],
            |r| Ok(SavedState { state: r.get(0)?, last_bar: r.get(1)?, lifetime: r.get(2)? }),
        )
        .optional()
        .map_err(sql("reading a strategy's state"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategy_state_is_kept_per_instance() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        assert_eq!(store.strategy_state("sma@alpaca").unwrap(), None);
        store.save_strategy_state("sma@alpaca", b"one", 10, 1).unwrap();
        store.save_strategy_state("sma@alpaca", b"two", 20, 2).unwrap();
        let saved = store.strategy_state("sma@alpaca").unwrap().unwrap();
        assert_eq!((saved.state, saved.last_bar, saved.lifetime), (b"two".to_vec(), 20, 1));
    }

    #[test]
    fn an_input_commits_its_orders_and_state_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let intent = crate::order::OrderIntent {
            symbol: "AAPL".into(),
            side: crate::order::Side::Buy,
            qty: 5.into(),
            order_type: crate::order::OrderType::Limit { price: "10.5".parse().unwrap() },
            time_in_force: crate::order::TimeInForce::Gtc,
        };
        // Ids are the strategy's to pick: decision order is not id order,
        // and any u64 round-trips.
        let orders: Vec<OrderRecord> = [9, 7, u64::MAX]
            .into_iter()
            .map(|id| {
                let order = crate::order::OrderRef::new(2, id);
                OrderRecord::for_intent("alpaca", "sma@alpaca", order, &intent, crate::order::OrderStatus::Queued, 3)
            })
            .collect();
        store.commit_input("sma@alpaca", Some((b"s", 30)), 2, &orders, None, 3).unwrap();

        let saved = store.strategy_state("sma@alpaca").unwrap().unwrap();
        assert_eq!((saved.state, saved.last_bar, saved.lifetime), (b"s".to_vec(), 30, 2));
        let queued = store.queued_orders("alpaca").unwrap();
        assert_eq!(queued, orders);
        assert_eq!(queued[0].intent(), intent, "the intent reads back");
        assert!(store.open_orders("alpaca").unwrap().is_empty(), "queued is not yet at the venue");
        assert_eq!(store.last_lifetime("sma@alpaca").unwrap(), 2);
        let mut ids = store.order_ids("sma@alpaca", 2).unwrap();
        ids.sort_unstable();
        assert_eq!(ids, vec![7, 9, u64::MAX]);
        assert!(store.order_ids("sma@alpaca", 1).unwrap().is_empty());

        // Committed again (a retry after a failed send): nothing doubles,
        // and an input whose state could not be saved keeps the old one.
        store.commit_input("sma@alpaca", None, 3, &orders, None, 4).unwrap();
        assert_eq!(store.queued_orders("alpaca").unwrap().len(), 3);
        assert_eq!(store.strategy_state("sma@alpaca").unwrap().unwrap().lifetime, 2);
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
}
