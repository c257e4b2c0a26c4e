//! What lets the host pick up where it left off: feed cursors, strategy
//! states and the keys of webhook deliveries already taken.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, sql};
use crate::bar::Millis;

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
        assert_eq!(store.strategy_state("sma@alpaca").unwrap(), Some((b"two".to_vec(), 20)));
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
