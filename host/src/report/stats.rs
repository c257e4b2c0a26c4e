//! A backtest's summary statistics, as quants compare strategies by them.
//!
//! Returns are daily: the equity at each UTC day's last bar against the
//! day before's (the first day against the starting cash), annualised
//! over 252 trading days, with no risk-free rate. A trade is a round trip
//! of one symbol's position from flat to flat; a fill that goes through
//! zero closes one trade and opens the next, its commission shared by
//! quantity.

use std::collections::HashMap;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Serialize;

use super::FillRecord;
use super::curve::Curve;
use crate::order::Side;

const TRADING_DAYS: f64 = 252.0;
const YEAR_MS: f64 = 365.25 * 86_400_000.0;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Statistics {
    /// Final equity over starting cash, less one.
    pub total_return: f64,
    /// Compounded per calendar year over the bars' span; none under a day.
    pub annual_return: Option<f64>,
    pub max_drawdown_pct: f64,
    /// Mean over standard deviation (n − 1) of daily returns, × √252.
    pub sharpe: Option<f64>,
    /// Mean over downside deviation (√ of the mean squared negative
    /// return, over all days) of daily returns, × √252.
    pub sortino: Option<f64>,
    /// Closed round trips.
    pub trades: u64,
    pub open_trades: u64,
    pub win_rate: Option<f64>,
    /// Gross profit over gross loss of closed trades; none without a loss.
    pub profit_factor: Option<f64>,
    /// The share of bars a position was held through.
    pub exposure: f64,
    pub daily_returns: u64,
}

/// A closed round trip.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trade {
    pub symbol: String,
    pub side: Side,
    pub opened: String,
    pub closed: String,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub qty: Decimal,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    pub pnl: Decimal,
}

/// Round trips from fills in time order; also the number still open.
pub fn trades(fills: &[FillRecord]) -> (Vec<Trade>, u64) {
    struct Open {
        side: Side,
        opened: String,
        qty: Decimal,
        position: Decimal,
        flow: Decimal,
    }
    let mut open: HashMap<&str, Open> = HashMap::new();
    let mut closed = Vec::new();
    for fill in fills {
        let signed = if fill.side == Side::Buy { fill.qty } else { -fill.qty };
        let mut qty_left = fill.qty;
        let per_unit_fee = if fill.qty.is_zero() { Decimal::ZERO } else { fill.commission / fill.qty };
        if let Some(trade) = open.get_mut(fill.symbol.as_str())
            && trade.position.is_sign_positive() != signed.is_sign_positive()
        {
            let closing = trade.position.abs().min(fill.qty);
            let direction = if trade.position.is_sign_positive() { Decimal::NEGATIVE_ONE } else { Decimal::ONE };
            trade.flow -= direction * closing * fill.price + per_unit_fee * closing;
            trade.position += direction * closing;
            qty_left -= closing;
            if trade.position.is_zero()
                && let Some(trade) = open.remove(fill.symbol.as_str())
            {
                closed.push(Trade {
                    symbol: fill.symbol.clone(),
                    side: trade.side,
                    opened: trade.opened,
                    closed: fill.time.clone(),
                    qty: trade.qty,
                    pnl: trade.flow,
                });
            }
        }
        if qty_left.is_zero() {
            continue;
        }
        let direction = if fill.side == Side::Buy { Decimal::ONE } else { Decimal::NEGATIVE_ONE };
        let trade = open.entry(fill.symbol.as_str()).or_insert_with(|| Open {
            side: fill.side,
            opened: fill.time.clone(),
            qty: Decimal::ZERO,
            position: Decimal::ZERO,
            flow: Decimal::ZERO,
        });
        trade.position += direction * qty_left;
        trade.qty += qty_left;
        trade.flow -= direction * qty_left * fill.price + per_unit_fee * qty_left;
    }
    (closed, open.len() as u64)
}

/// The statistics of a run that started with `starting_cash`.
pub fn statistics(
    curve: &Curve,
    trades: &[Trade],
    open_trades: u64,
    starting_cash: Decimal,
    max_drawdown_pct: Decimal,
) -> Statistics {
    let start = starting_cash.to_f64().unwrap_or(f64::NAN);
    let daily = curve.daily();
    let end = daily.last().map_or(start, |(_, e)| *e);
    let mut returns = Vec::with_capacity(daily.len());
    let mut before = start;
    for (_, equity) in daily {
        if before != 0.0 {
            returns.push(equity / before - 1.0);
        }
        before = *equity;
    }
    let n = returns.len() as f64;
    let mean = returns.iter().sum::<f64>() / n;
    let sharpe = (returns.len() >= 2)
        .then(|| {
            let variance = returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0);
            (variance > 0.0).then(|| mean / variance.sqrt() * TRADING_DAYS.sqrt())
        })
        .flatten();
    let sortino = (returns.len() >= 2)
        .then(|| {
            let downside = (returns.iter().map(|r| r.min(0.0).powi(2)).sum::<f64>() / n).sqrt();
            (downside > 0.0).then(|| mean / downside * TRADING_DAYS.sqrt())
        })
        .flatten();
    let total_return = end / start - 1.0;
    let annual_return = curve.span().and_then(|(first, last)| {
        let years = (last - first) as f64 / YEAR_MS;
        (years * 365.25 >= 1.0 && end > 0.0).then(|| (end / start).powf(1.0 / years) - 1.0)
    });
    let wins = trades.iter().filter(|t| t.pnl > Decimal::ZERO).count();
    let profit: Decimal = trades.iter().filter(|t| t.pnl > Decimal::ZERO).map(|t| t.pnl).sum();
    let loss: Decimal = trades.iter().filter(|t| t.pnl < Decimal::ZERO).map(|t| -t.pnl).sum();
    Statistics {
        total_return,
        annual_return,
        max_drawdown_pct: max_drawdown_pct.to_f64().unwrap_or(f64::NAN),
        sharpe,
        sortino,
        trades: trades.len() as u64,
        open_trades,
        win_rate: (!trades.is_empty()).then(|| wins as f64 / trades.len() as f64),
        profit_factor: (!loss.is_zero()).then(|| (profit / loss).to_f64().unwrap_or(f64::NAN)),
        exposure: curve.exposure(),
        daily_returns: returns.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(time: &str, side: Side, qty: i64, price: i64, commission: i64) -> FillRecord {
        FillRecord {
            time: time.into(),
            symbol: "X".into(),
            side,
            qty: qty.into(),
            price: price.into(),
            commission: commission.into(),
        }
    }

    #[test]
    fn round_trips_close_at_flat_and_a_flip_opens_the_next() {
        let fills = [
            fill("t1", Side::Buy, 10, 100, 1),
            fill("t2", Side::Buy, 10, 110, 1),
            fill("t3", Side::Sell, 30, 120, 3),
            fill("t4", Side::Buy, 10, 100, 1),
            fill("t5", Side::Buy, 5, 90, 0),
        ];
        let (trades, open) = trades(&fills);
        assert_eq!(trades.len(), 2);
        // Long 20: paid 2,100 and 2 in fees; sold 20 at 120 with 2 in fees.
        assert_eq!(
            (trades[0].side, trades[0].qty, trades[0].pnl),
            (Side::Buy, 20.into(), Decimal::from(2400 - 2100 - 4))
        );
        // Short 10 from the flip at 120 (fee 1), covered at 100 (fee 1).
        assert_eq!(
            (trades[1].side, trades[1].opened.as_str(), trades[1].pnl),
            (Side::Sell, "t3", Decimal::from(200 - 2))
        );
        assert_eq!(open, 1, "the last buy opened a trade still open");
    }
}
