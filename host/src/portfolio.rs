//! Positions, cash and profit, kept exactly.
//!
//! Realized PnL uses average cost and is net of commissions; unrealized PnL
//! marks open positions to their last close. Drawdown is measured on equity
//! (cash plus positions at their last close) after every bar.

use std::collections::HashMap;
use std::sync::Arc;

use rust_decimal::Decimal;

use crate::bar::Bar;
use crate::order::Fill;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    /// Signed quantity: positive long, negative short.
    pub qty: Decimal,
    /// Average entry price of the open quantity.
    pub avg_price: Decimal,
    pub last_price: Decimal,
}

/// One symbol's position and last close.
#[derive(Debug, Clone)]
struct Book {
    symbol: Arc<str>,
    /// Last close seen, whether or not a position is held.
    close: Option<Decimal>,
    position: Position,
    /// Realized PnL in this symbol, net of its commissions.
    realized_pnl: Decimal,
    fills: u64,
}

/// One symbol's share of the portfolio's profit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolPnl {
    pub symbol: Arc<str>,
    pub position: Decimal,
    pub fills: u64,
    /// Net of its commissions.
    pub realized_pnl: Decimal,
    pub unrealized_pnl: Decimal,
}

#[derive(Debug, Clone)]
pub struct Portfolio {
    pub starting_cash: Decimal,
    pub cash: Decimal,
    books: Vec<Book>,
    index: HashMap<Arc<str>, usize>,
    /// The book used last; bars of one symbol share one `Arc`, so a pointer
    /// comparison usually finds the book without hashing.
    recent: usize,
    pub realized_pnl: Decimal,
    pub commission: Decimal,
    peak_equity: Decimal,
    pub max_drawdown: Decimal,
    /// Largest drawdown as a fraction of the peak it fell from.
    pub max_drawdown_pct: Decimal,
    /// Whether the drawdown reflects the cash and every position as they
    /// are: then a bar of a symbol not held cannot move equity, and marking
    /// it needs no decimal work.
    settled: bool,
}

impl Portfolio {
    pub fn new(starting_cash: Decimal) -> Self {
        Self {
            starting_cash,
            cash: starting_cash,
            books: Vec::new(),
            index: HashMap::new(),
            recent: 0,
            realized_pnl: Decimal::ZERO,
            commission: Decimal::ZERO,
            peak_equity: starting_cash,
            max_drawdown: Decimal::ZERO,
            max_drawdown_pct: Decimal::ZERO,
            settled: false,
        }
    }

    fn book(&mut self, symbol: &Arc<str>) -> &mut Book {
        let hit = self.books.get(self.recent).is_some_and(|b| Arc::ptr_eq(&b.symbol, symbol));
        if !hit {
            self.recent = match self.index.get(symbol) {
                Some(&at) => at,
                None => {
                    self.books.push(Book {
                        symbol: symbol.clone(),
                        close: None,
                        position: Position::default(),
                        realized_pnl: Decimal::ZERO,
                        fills: 0,
                    });
                    self.index.insert(symbol.clone(), self.books.len() - 1);
                    self.books.len() - 1
                }
            };
        }
        &mut self.books[self.recent]
    }

    pub fn position(&self, symbol: &str) -> Option<&Position> {
        self.index.get(symbol).map(|&at| &self.books[at].position)
    }

    pub fn last_close(&self, symbol: &str) -> Option<Decimal> {
        self.index.get(symbol).and_then(|&at| self.books[at].close)
    }

    /// Every symbol seen and the quantity held in it.
    pub fn positions(&self) -> impl Iterator<Item = (&Arc<str>, Decimal)> {
        self.books.iter().map(|b| (&b.symbol, b.position.qty))
    }

    pub fn qty(&self, symbol: &str) -> Decimal {
        self.position(symbol).map_or(Decimal::ZERO, |p| p.qty)
    }

    /// Sets a position outright, e.g. from the broker at startup.
    pub fn set_position(&mut self, symbol: &Arc<str>, qty: Decimal, avg_price: Decimal) {
        self.settled = false;
        let pos = &mut self.book(symbol).position;
        pos.qty = qty;
        pos.avg_price = avg_price;
        if pos.last_price.is_zero() {
            pos.last_price = avg_price;
        }
    }

    /// Applies a fill and returns the new position in its symbol.
    pub fn apply(&mut self, fill: &Fill) -> Decimal {
        self.settled = false;
        let signed = fill.side.sign() * fill.qty;
        let mut realized = Decimal::ZERO;
        let book = self.book(&fill.symbol);
        book.fills += 1;
        let pos = &mut book.position;
        if pos.qty.is_zero() || pos.qty.is_sign_positive() == signed.is_sign_positive() {
            let total = pos.qty.abs() + fill.qty;
            pos.avg_price = (pos.avg_price * pos.qty.abs() + fill.price * fill.qty) / total;
        } else {
            let closing = pos.qty.abs().min(fill.qty);
            let direction = if pos.qty.is_sign_positive() { Decimal::ONE } else { Decimal::NEGATIVE_ONE };
            realized = closing * (fill.price - pos.avg_price) * direction;
            if fill.qty > closing {
                // Flipped through zero: the remainder opens at the fill price.
                pos.avg_price = fill.price;
            }
        }
        pos.qty += signed;
        if pos.qty.is_zero() {
            pos.avg_price = Decimal::ZERO;
        }
        pos.last_price = fill.price;
        let qty = pos.qty;
        self.books[self.recent].realized_pnl += realized - fill.commission;
        self.realized_pnl += realized - fill.commission;
        self.cash -= signed * fill.price + fill.commission;
        self.commission += fill.commission;
        qty
    }

    /// Records the bar's close and updates the drawdown.
    pub fn mark(&mut self, bar: &Bar) {
        let book = self.book(&bar.symbol);
        book.close = Some(bar.close);
        book.position.last_price = bar.close;
        if book.position.qty.is_zero() && self.settled {
            return;
        }
        self.settled = true;
        let equity = self.equity();
        if equity > self.peak_equity {
            self.peak_equity = equity;
            return;
        }
        let drawdown = self.peak_equity - equity;
        if drawdown > self.max_drawdown {
            self.max_drawdown = drawdown;
        }
        // Compare by multiplying; divide only for a new maximum.
        if self.peak_equity > Decimal::ZERO && drawdown > self.max_drawdown_pct * self.peak_equity {
            self.max_drawdown_pct = drawdown / self.peak_equity;
        }
    }

    /// Whether any position is open.
    pub fn is_exposed(&self) -> bool {
        self.books.iter().any(|b| !b.position.qty.is_zero())
    }

    pub fn equity(&self) -> Decimal {
        self.cash + self.books.iter().map(|b| b.position.qty * b.position.last_price).sum::<Decimal>()
    }

    /// Each symbol's position and profit, in the order they were first seen.
    pub fn by_symbol(&self) -> Vec<SymbolPnl> {
        self.books
            .iter()
            .map(|b| SymbolPnl {
                symbol: b.symbol.clone(),
                position: b.position.qty,
                fills: b.fills,
                realized_pnl: b.realized_pnl,
                unrealized_pnl: (b.position.last_price - b.position.avg_price) * b.position.qty,
            })
            .collect()
    }

    pub fn unrealized_pnl(&self) -> Decimal {
        self.books.iter().map(|b| (b.position.last_price - b.position.avg_price) * b.position.qty).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::Side;

    fn fill(side: Side, qty: i64, price: i64, commission: i64) -> Fill {
        Fill {
            intent_id: crate::order::OrderRef::new(1, 1),
            symbol: "X".into(),
            side,
            qty: qty.into(),
            price: price.into(),
            commission: commission.into(),
            time: 0,
        }
    }

    fn bar(close: i64) -> Bar {
        Bar {
            symbol: "X".into(),
            time: 0,
            open: close.into(),
            high: close.into(),
            low: close.into(),
            close: close.into(),
            volume: Decimal::ZERO,
        }
    }

    #[test]
    fn realizes_against_average_cost_net_of_commission() {
        let mut p = Portfolio::new(1000.into());
        p.apply(&fill(Side::Buy, 2, 10, 1));
        p.apply(&fill(Side::Buy, 2, 20, 1));
        assert_eq!(p.position("X").unwrap().avg_price, Decimal::from(15));
        assert_eq!(p.apply(&fill(Side::Sell, 3, 25, 1)), Decimal::ONE);
        assert_eq!(p.realized_pnl, Decimal::from(30 - 3));
        assert_eq!(p.commission, Decimal::from(3));
        p.mark(&bar(17));
        assert_eq!(p.unrealized_pnl(), Decimal::from(2));
        assert_eq!(p.equity(), Decimal::from(1000 - 20 - 40 + 75 - 3 + 17));
    }

    #[test]
    fn flips_through_zero_and_tracks_drawdown() {
        let mut p = Portfolio::new(100.into());
        p.apply(&fill(Side::Buy, 1, 10, 0));
        p.mark(&bar(20)); // equity 110, the peak
        p.mark(&bar(5)); // equity 95
        assert_eq!(p.max_drawdown, Decimal::from(15));
        assert_eq!(p.apply(&fill(Side::Sell, 3, 5, 0)), Decimal::from(-2));
        assert_eq!(p.realized_pnl, Decimal::from(-5));
        assert_eq!(p.position("X").unwrap().avg_price, Decimal::from(5));
        p.mark(&bar(4));
        assert_eq!(p.unrealized_pnl(), Decimal::from(2));
    }
}
