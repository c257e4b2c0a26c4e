//! What the control API reads of a venue's orders and fills: by instance,
//! newest first, never written here.

use rusqlite::params;

use super::orders::{RawFill, fill_from_raw, raw_fill};
use super::{FillRecord, OrderRecord, Store, StoreError, sql};

impl Store {
    /// Orders at `venue` not yet done: queued (decided, not yet sent) and
    /// those the venue may still fill, in decision order.
    pub fn working_orders(&self, venue: &str) -> Result<Vec<OrderRecord>, StoreError> {
        let mut orders = self.queued_orders(venue)?;
        orders.extend(self.open_orders(venue)?);
        orders.sort_by_key(|o| o.created);
        Ok(orders)
    }

    /// The latest `limit` fills at `venue`, newest first, each with the
    /// instance (`name@venue`) whose order it filled.
    pub fn recent_fills(&self, venue: &str, limit: u32) -> Result<Vec<(String, FillRecord)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT o.strategy, f.venue, f.fill_id, f.client_order_id, f.symbol, f.side, f.qty, f.price,
                    f.commission, f.time_ms
                 FROM fills f JOIN orders o ON o.client_order_id = f.client_order_id
                 WHERE f.venue = ?1 ORDER BY f.time_ms DESC, f.rowid DESC LIMIT ?2",
            )
            .map_err(sql("reading recent fills"))?;
        let rows = stmt
            .query_map(params![venue, limit], |r| Ok((r.get::<_, String>(0)?, raw_fill(r, 1)?)))
            .map_err(sql("reading recent fills"))?;
        let raw: Vec<(String, RawFill)> = rows.collect::<Result<_, _>>().map_err(sql("reading recent fills"))?;
        raw.into_iter().map(|(instance, fill)| Ok((instance, fill_from_raw(fill)?))).collect()
    }
}
