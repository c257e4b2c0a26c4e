//! Pre-trade risk checks: the host, not the strategy, decides what trades.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::order::{OrderIntent, OrderType};

/// Limits from config; an absent limit is not enforced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskLimits {
    /// Largest absolute position per symbol, counting open orders.
    pub max_position: Option<Decimal>,
    /// Largest `qty × price` of one order.
    pub max_order_notional: Option<Decimal>,
    /// Symbols strategies may trade; absent means any.
    pub allowed_symbols: Option<Vec<String>>,
}

/// Why an intent was refused before reaching a broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RiskViolation {
    #[error("symbol {symbol} is not in the allowed symbols")]
    SymbolNotAllowed { symbol: String },
    #[error("position in {symbol} would reach {would_be}, beyond the limit of ±{limit}")]
    PositionLimit { symbol: String, would_be: Decimal, limit: Decimal },
    #[error("order notional {notional} exceeds the limit of {limit}")]
    NotionalLimit { notional: Decimal, limit: Decimal },
    #[error("no price is known for {symbol}, so its notional cannot be checked")]
    NoPrice { symbol: String },
    #[error("trading on {venue} is halted")]
    Halted { venue: String },
    #[error("{venue} accepts only orders that reduce a position")]
    ReducingOnly { venue: String },
}

/// Whether a venue may take new orders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TradingState {
    #[default]
    Active,
    /// Only orders that bring a position closer to zero.
    Reducing,
    /// No new orders at all.
    Halted,
}

/// Trading state per venue, shared by the reconciler (which sets it) and
/// the risk checks (which obey it).
#[derive(Debug, Clone, Default)]
pub struct RiskGate {
    states: Arc<RwLock<HashMap<String, TradingState>>>,
}

impl RiskGate {
    pub fn state(&self, venue: &str) -> TradingState {
        self.states.read().map(|s| s.get(venue).copied().unwrap_or_default()).unwrap_or(TradingState::Halted)
    }

    pub fn set(&self, venue: &str, state: TradingState) {
        if let Ok(mut states) = self.states.write() {
            states.insert(venue.to_string(), state);
        }
    }

    /// Checks an order that would move a position from `before` to `after`.
    pub fn check(&self, venue: &str, before: Decimal, after: Decimal) -> Result<(), RiskViolation> {
        match self.state(venue) {
            TradingState::Active => Ok(()),
            TradingState::Reducing
                if after.abs() < before.abs()
                    && (after.is_zero() || after.is_sign_positive() == before.is_sign_positive()) =>
            {
                Ok(())
            }
            TradingState::Reducing => Err(RiskViolation::ReducingOnly { venue: venue.into() }),
            TradingState::Halted => Err(RiskViolation::Halted { venue: venue.into() }),
        }
    }
}

impl RiskLimits {
    /// Checks one intent. `exposure` is the current position plus the signed
    /// quantity of open orders in the symbol; `last_price` its latest price.
    pub fn check(
        &self,
        intent: &OrderIntent,
        exposure: Decimal,
        last_price: Option<Decimal>,
    ) -> Result<(), RiskViolation> {
        if let Some(allowed) = &self.allowed_symbols
            && !allowed.iter().any(|s| **s == *intent.symbol)
        {
            return Err(RiskViolation::SymbolNotAllowed { symbol: intent.symbol.to_string() });
        }
        if let Some(limit) = self.max_position {
            let would_be = exposure + intent.side.sign() * intent.qty;
            if would_be.abs() > limit {
                return Err(RiskViolation::PositionLimit { symbol: intent.symbol.to_string(), would_be, limit });
            }
        }
        if let Some(limit) = self.max_order_notional {
            let price = match intent.order_type {
                OrderType::Limit { price } => Some(price),
                OrderType::Market => last_price,
            };
            let price = price.ok_or_else(|| RiskViolation::NoPrice { symbol: intent.symbol.to_string() })?;
            let notional = intent.qty.checked_mul(price).unwrap_or(Decimal::MAX);
            if notional > limit {
                return Err(RiskViolation::NotionalLimit { notional, limit });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::Side;

    fn buy(symbol: &str, qty: i64) -> OrderIntent {
        OrderIntent::market(symbol.into(), Side::Buy, Decimal::from(qty))
    }

    #[test]
    fn the_gate_halts_or_only_reduces() {
        let gate = RiskGate::default();
        let d = Decimal::from;
        assert!(gate.check("alpaca", d(0), d(5)).is_ok());
        gate.set("alpaca", TradingState::Reducing);
        assert!(gate.check("alpaca", d(5), d(2)).is_ok());
        assert!(gate.check("alpaca", d(5), d(0)).is_ok());
        assert!(gate.check("alpaca", d(5), d(6)).is_err());
        assert!(gate.check("alpaca", d(5), d(-1)).is_err(), "flipping short is not reducing");
        gate.set("alpaca", TradingState::Halted);
        assert!(matches!(gate.check("alpaca", d(5), d(0)), Err(RiskViolation::Halted { .. })));
        assert!(gate.check("binance", d(0), d(1)).is_ok(), "venues are independent");
    }

    #[test]
    fn no_limits_allow_everything() {
        assert!(RiskLimits::default().check(&buy("X", 1_000_000), Decimal::ZERO, None).is_ok());
    }

    #[test]
    fn enforces_each_limit() {
        let limits = RiskLimits {
            max_position: Some(Decimal::from(10)),
            max_order_notional: Some(Decimal::from(1000)),
            allowed_symbols: Some(vec!["AAPL".into()]),
        };
        let px = Some(Decimal::from(50));
        assert!(limits.check(&buy("AAPL", 5), Decimal::from(5), px).is_ok());
        assert!(matches!(
            limits.check(&buy("MSFT", 1), Decimal::ZERO, px),
            Err(RiskViolation::SymbolNotAllowed { .. })
        ));
        assert!(matches!(
            limits.check(&buy("AAPL", 6), Decimal::from(5), px),
            Err(RiskViolation::PositionLimit { .. })
        ));
        assert!(matches!(limits.check(&buy("AAPL", 1), Decimal::ZERO, None), Err(RiskViolation::NoPrice { .. })));
        let big = OrderIntent { order_type: OrderType::Limit { price: Decimal::from(500) }, ..buy("AAPL", 3) };
        assert!(matches!(limits.check(&big, Decimal::ZERO, px), Err(RiskViolation::NotionalLimit { .. })));
        // Selling down from a long position is within the limit.
        let sell = OrderIntent { side: Side::Sell, ..buy("AAPL", 10) };
        assert!(limits.check(&sell, Decimal::from(10), px).is_ok());
    }
}
