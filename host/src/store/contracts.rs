//! The ids venues give their instruments (Interactive Brokers' `conid`),
//! found once and kept: a symbol's id never changes for a listed contract,
//! and looking it up costs a rate-limited search.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError, sql};

impl Store {
    /// The id `venue` gave `symbol`, if it was ever stored.
    pub fn contract(&self, venue: &str, symbol: &str) -> Result<Option<String>, StoreError> {
        self.lock()
            .query_row(
                "SELECT contract FROM venue_contracts WHERE venue = ?1 AND symbol = ?2",
                params![venue, symbol],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("reading a venue's contract id"))
    }

    /// Every symbol of `venue` with a stored id, as `(symbol, id)`.
    pub fn contracts(&self, venue: &str) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT symbol, contract FROM venue_contracts WHERE venue = ?1 ORDER BY symbol")
            .map_err(sql("reading a venue's contract ids"))?;
        let rows =
            stmt.query_map(params![venue], |r| Ok((r.get(0)?, r.get(1)?))).map_err(sql("reading contract ids"))?;
        rows.collect::<Result<_, _>>().map_err(sql("reading contract ids"))
    }

    /// Stores the id `venue` gave `symbol`, replacing an older one.
    pub fn put_contract(&self, venue: &str, symbol: &str, contract: &str) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "INSERT INTO venue_contracts (venue, symbol, contract) VALUES (?1, ?2, ?3)
                 ON CONFLICT (venue, symbol) DO UPDATE SET contract = excluded.contract",
                params![venue, symbol, contract],
            )
            .map(|_| ())
            .map_err(sql("storing a venue's contract id"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_ids_outlive_the_store_handle_and_are_kept_per_venue() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let store = Store::open(&path).unwrap();
            assert_eq!(store.contract("ibkr", "AAPL").unwrap(), None);
            store.put_contract("ibkr", "AAPL", "1").unwrap();
            store.put_contract("ibkr", "AAPL", "265598").unwrap();
            store.put_contract("other", "AAPL", "x").unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.contract("ibkr", "AAPL").unwrap().as_deref(), Some("265598"));
        assert_eq!(store.contracts("ibkr").unwrap(), vec![("AAPL".to_string(), "265598".to_string())]);
    }
}
