//! Each venue's trading state (active, reducing, halted), kept so that a
//! halt outlives the process that decided it.

use rusqlite::{OptionalExtension, params};

use super::journal::append;
use super::{Store, StoreError, sql};
use crate::bar::Millis;

/// A venue's trading state as stored: the state's name, why, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenueStateRecord {
    pub venue: String,
    pub state: String,
    /// JSON text describing the reason, when there is one.
    pub reason: Option<String>,
    pub since: Millis,
}

impl Store {
    /// The stored trading state of `venue`, if one was ever set.
    pub fn venue_state(&self, venue: &str) -> Result<Option<VenueStateRecord>, StoreError> {
        let conn = self.lock();
        conn.query_row(
            "SELECT venue, state, reason, since_ms FROM venue_states WHERE venue = ?1",
            params![venue],
            |r| Ok(VenueStateRecord { venue: r.get(0)?, state: r.get(1)?, reason: r.get(2)?, since: r.get(3)? }),
        )
        .optional()
        .map_err(sql("reading a venue's trading state"))
    }

    /// Every stored trading state, by venue.
    pub fn venue_states(&self) -> Result<Vec<VenueStateRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT venue, state, reason, since_ms FROM venue_states ORDER BY venue")
            .map_err(sql("reading trading states"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(VenueStateRecord { venue: r.get(0)?, state: r.get(1)?, reason: r.get(2)?, since: r.get(3)? })
            })
            .map_err(sql("reading trading states"))?;
        rows.collect::<Result<_, _>>().map_err(sql("reading trading states"))
    }

    /// Stores a venue's new trading state and journals the change as
    /// `kind` with `data`, in one transaction.
    pub fn set_venue_state(&self, record: &VenueStateRecord, kind: &str, data: &str) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(sql("starting a trading state change"))?;
        tx.execute(
            "INSERT INTO venue_states (venue, state, reason, since_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (venue) DO UPDATE SET state = excluded.state, reason = excluded.reason,
                since_ms = excluded.since_ms",
            params![record.venue, record.state, record.reason, record.since],
        )
        .map_err(sql("storing a trading state"))?;
        append(&tx, record.since, kind, Some(&record.venue), data)?;
        tx.commit().map_err(sql("committing a trading state change"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trading_state_survives_reopening_with_its_journal_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let halted = VenueStateRecord {
            venue: "alpaca".into(),
            state: "halted".into(),
            reason: Some(r#"{"kind":"drift"}"#.into()),
            since: 7,
        };
        {
            let store = Store::open(&path).unwrap();
            assert_eq!(store.venue_state("alpaca").unwrap(), None);
            store.set_venue_state(&halted, "risk.halted", "{}").unwrap();
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.venue_state("alpaca").unwrap(), Some(halted.clone()));
        assert_eq!(store.venue_states().unwrap(), vec![halted]);
        assert_eq!(store.events_after(0, 10).unwrap()[0].kind, "risk.halted");
    }
}
