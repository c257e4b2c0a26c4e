//! Pre-trade risk checks: the host, not the strategy, decides what trades.

use rust_decimal::Decimal;
use serde::Deserialize;

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
    use crate::order::{Side, TimeInForce};

    fn buy(symbol: &str, qty: i64) -> OrderIntent {
        OrderIntent {
            symbol: symbol.into(),
            side: Side::Buy,
            qty: Decimal::from(qty),
            order_type: OrderType::Market,
            time_in_force: TimeInForce::Gtc,
        }
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
