//! Conversions between the host's types and the contract's.
//!
//! Money and quantities cross as `{mantissa: s64, scale: u8}`, exactly. A
//! host value whose mantissa needs more than 64 bits is first normalised
//! (trailing zeros dropped) and refused if it still does not fit; a guest
//! value with a scale above 28 is refused.

use std::sync::Arc;

use rust_decimal::Decimal;

use super::bindings::types as wit;
use crate::bar::Bar;
use crate::order::{Action, Fill, Level, OrderIntent, OrderType, Side, TimeInForce};

/// The most actions one callback may return.
pub const MAX_ACTIONS_PER_CALL: usize = 10_000;
/// The longest symbol a strategy may name, in bytes.
pub const MAX_SYMBOL_LEN: usize = 64;
/// The longest notification text kept, in bytes.
pub const MAX_NOTIFY_LEN: usize = 4096;

/// A value that breaks the contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ContractError(pub String);

pub fn decimal_to_wit(value: Decimal) -> Result<wit::Decimal, ContractError> {
    let fits =
        |d: Decimal| i64::try_from(d.mantissa()).ok().map(|mantissa| wit::Decimal { mantissa, scale: d.scale() as u8 });
    fits(value)
        .or_else(|| fits(value.normalize()))
        .ok_or_else(|| ContractError(format!("{value} does not fit a 64-bit mantissa")))
}

pub fn decimal_from_wit(value: wit::Decimal) -> Result<Decimal, ContractError> {
    Decimal::try_from_i128_with_scale(i128::from(value.mantissa), u32::from(value.scale))
        .map_err(|_| ContractError(format!("decimal scale {} exceeds 28", value.scale)))
}

/// Cuts `text` to at most `max` bytes, at a character boundary.
pub fn truncate_utf8(text: &mut String, max: usize) {
    if text.len() > max {
        let cut = (0..=max).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        text.truncate(cut);
    }
}

/// Writes `bar` into a reusable guest bar, keeping its string's allocation.
pub fn bar_into_wit(bar: &Bar, out: &mut wit::Bar) -> Result<(), ContractError> {
    out.symbol.clear();
    out.symbol.push_str(&bar.symbol);
    out.time = bar.time;
    out.open = decimal_to_wit(bar.open)?;
    out.high = decimal_to_wit(bar.high)?;
    out.low = decimal_to_wit(bar.low)?;
    out.close = decimal_to_wit(bar.close)?;
    out.volume = decimal_to_wit(bar.volume)?;
    Ok(())
}

pub fn empty_bar() -> wit::Bar {
    let zero = wit::Decimal { mantissa: 0, scale: 0 };
    wit::Bar { symbol: String::new(), time: 0, open: zero, high: zero, low: zero, close: zero, volume: zero }
}

fn side_to_wit(side: Side) -> wit::Side {
    match side {
        Side::Buy => wit::Side::Buy,
        Side::Sell => wit::Side::Sell,
    }
}

pub fn fill_to_wit(fill: &Fill) -> Result<wit::Fill, ContractError> {
    Ok(wit::Fill {
        intent: fill.intent_id,
        symbol: fill.symbol.to_string(),
        side: side_to_wit(fill.side),
        qty: decimal_to_wit(fill.qty)?,
        price: decimal_to_wit(fill.price)?,
        commission: decimal_to_wit(fill.commission)?,
        time: fill.time,
    })
}

/// Checks and converts one action a strategy returned.
pub fn action_from_wit(action: wit::Action) -> Result<Action, ContractError> {
    Ok(match action {
        wit::Action::Submit(intent) => Action::Submit { intent: intent_from_wit(intent)? },
        wit::Action::Cancel(intent_id) => Action::Cancel { intent_id },
        wit::Action::Notify(n) => {
            let mut message = n.message;
            truncate_utf8(&mut message, MAX_NOTIFY_LEN);
            let level = match n.level {
                wit::Level::Info => Level::Info,
                wit::Level::Warning => Level::Warning,
                wit::Level::Critical => Level::Critical,
            };
            Action::Notify { level, message }
        }
    })
}

fn intent_from_wit(intent: wit::OrderIntent) -> Result<OrderIntent, ContractError> {
    let symbol = intent.symbol;
    if symbol.is_empty() || symbol.len() > MAX_SYMBOL_LEN || symbol.chars().any(char::is_control) {
        return Err(ContractError(format!("invalid symbol {symbol:?}")));
    }
    let qty = decimal_from_wit(intent.qty)?;
    if qty <= Decimal::ZERO {
        return Err(ContractError(format!("order quantity must be positive, got {qty}")));
    }
    let order_type = match intent.order_type {
        wit::OrderType::Market => OrderType::Market,
        wit::OrderType::Limit(price) => {
            let price = decimal_from_wit(price)?;
            if price <= Decimal::ZERO {
                return Err(ContractError(format!("limit price must be positive, got {price}")));
            }
            OrderType::Limit { price }
        }
    };
    Ok(OrderIntent {
        symbol: Arc::from(symbol),
        side: match intent.side {
            wit::Side::Buy => Side::Buy,
            wit::Side::Sell => Side::Sell,
        },
        qty,
        order_type,
        time_in_force: match intent.time_in_force {
            wit::TimeInForce::Day => TimeInForce::Day,
            wit::TimeInForce::Gtc => TimeInForce::Gtc,
            wit::TimeInForce::Ioc => TimeInForce::Ioc,
            wit::TimeInForce::Fok => TimeInForce::Fok,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_round_trip_exactly() {
        for text in ["0", "1", "118.56", "-0.000000001", "9223372036854775807", "12345678.123456789"] {
            let d: Decimal = text.parse().unwrap();
            assert_eq!(decimal_from_wit(decimal_to_wit(d).unwrap()).unwrap(), d, "{text}");
        }
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let huge: Decimal = "79228162514264337593543950335".parse().unwrap();
        assert!(decimal_to_wit(huge).is_err());
        // Trailing zeros are dropped to make a value fit.
        let padded = Decimal::from_i128_with_scale(10_000_000_000_000_000_000, 10);
        let fitted = decimal_to_wit(padded).unwrap();
        assert_eq!((fitted.mantissa, fitted.scale), (1_000_000_000, 0));
        assert!(decimal_from_wit(wit::Decimal { mantissa: 1, scale: 29 }).is_err());
    }

    #[test]
    fn truncates_at_character_boundaries() {
        let mut text = "aé€".to_string(); // 1 + 2 + 3 bytes
        truncate_utf8(&mut text, 4);
        assert_eq!(text, "aé");
        truncate_utf8(&mut text, 2);
        assert_eq!(text, "a");
    }

    #[test]
    fn refuses_hostile_intents() {
        let intent = |symbol: &str, mantissa| {
            wit::Action::Submit(wit::OrderIntent {
                symbol: symbol.into(),
                side: wit::Side::Buy,
                qty: wit::Decimal { mantissa, scale: 0 },
                order_type: wit::OrderType::Market,
                time_in_force: wit::TimeInForce::Gtc,
            })
        };
        assert!(action_from_wit(intent("AAPL", 1)).is_ok());
        assert!(action_from_wit(intent("AAPL", 0)).is_err());
        assert!(action_from_wit(intent("AAPL", -3)).is_err());
        assert!(action_from_wit(intent("", 1)).is_err());
        assert!(action_from_wit(intent("A\nB", 1)).is_err());
        assert!(action_from_wit(intent(&"X".repeat(65), 1)).is_err());
    }
}
