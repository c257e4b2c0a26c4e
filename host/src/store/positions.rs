//! Positions: the venue's book (moved by every recorded fill, corrected by
//! reconciliation) and each strategy instance's own (the fills of its own
//! orders).

use rusqlite::{OptionalExtension, Transaction, params};
use rust_decimal::Decimal;

use super::journal::append;
use super::orders::side_from_text;
use super::{FillRecord, PositionRecord, Store, StoreError, decimal, sql};
use crate::bar::Millis;

impl Store {
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

    /// The positions of one strategy instance (`name@venue`): the sum of
    /// the fills of its own orders (webhook orders placed through it
    /// included), not the venue's whole position, which may hold other
    /// instances' and what was traded outside the host.
    pub fn instance_positions(&self, instance: &str) -> Result<Vec<PositionRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT f.venue, f.symbol, f.side, f.qty, f.price FROM fills f
                 JOIN orders o ON o.client_order_id = f.client_order_id
                 WHERE o.strategy = ?1 ORDER BY f.time_ms, f.rowid",
            )
            .map_err(sql("reading an instance's fills"))?;
        let rows = stmt
            .query_map(params![instance], |r| {
                let text = |i| r.get::<_, String>(i);
                Ok((text(0)?, text(1)?, text(2)?, text(3)?, text(4)?))
            })
            .map_err(sql("reading an instance's fills"))?;
        let raw: Vec<_> = rows.collect::<Result<_, _>>().map_err(sql("reading an instance's fills"))?;
        let mut books: Vec<PositionRecord> = Vec::new();
        for (venue, symbol, side, qty, price) in raw {
            let (side, qty, price) =
                (side_from_text(&side)?, decimal("fill quantity", &qty)?, decimal("fill price", &price)?);
            let index = match books.iter().position(|b| b.symbol == symbol) {
                Some(index) => index,
                None => {
                    books.push(PositionRecord { venue, symbol, qty: Decimal::ZERO, avg_price: Decimal::ZERO });
                    books.len() - 1
                }
            };
            let book = &mut books[index];
            (book.qty, book.avg_price) = moved(book.qty, book.avg_price, side.sign() * qty, price);
        }
        books.retain(|b| !b.qty.is_zero());
        books.sort_by(|a, b| a.symbol.cmp(&b.symbol));
        Ok(books)
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

pub(super) fn move_position(tx: &Transaction<'_>, fill: &FillRecord) -> Result<(), StoreError> {
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
    let (new_qty, new_avg) = moved(qty, avg, fill.side.sign() * fill.qty, fill.price);
    tx.execute(
        "INSERT INTO positions (venue, symbol, qty, avg_price, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (venue, symbol) DO UPDATE SET qty = excluded.qty, avg_price = excluded.avg_price, updated_ms = excluded.updated_ms",
        params![fill.venue, fill.symbol, new_qty.to_string(), new_avg.to_string(), fill.time],
    )
    .map_err(sql("moving a position"))?;
    Ok(())
}

/// A position of `qty` at `avg`, after a fill of `signed` (negative to
/// sell) at `price`: adding averages the price in, reducing keeps it, and
/// crossing zero starts afresh at the fill's price.
fn moved(qty: Decimal, avg: Decimal, signed: Decimal, price: Decimal) -> (Decimal, Decimal) {
    let new_qty = qty + signed;
    let new_avg = if new_qty.is_zero() {
        Decimal::ZERO
    } else if qty.is_zero() || qty.is_sign_positive() == signed.is_sign_positive() {
        (avg * qty.abs() + price * signed.abs()) / new_qty.abs()
    } else if new_qty.is_sign_positive() == qty.is_sign_positive() {
        avg
    } else {
        price
    };
    (new_qty, new_avg)
}
