//! Conversions between the host's types and the contract's.
//!
//! Money and quantities cross as `{mantissa: s64, scale: u8}`, exactly. A
//! host value whose mantissa needs more than 64 bits is first normalised
//! (trailing zeros dropped) and refused if it still does not fit; a guest
//! value with a scale above 28 is refused.

use std::sync::Arc;

use rust_decimal::Decimal;

use super::ParamValue;
use super::bindings::types as wit;
use super::budget::LogRate;
use crate::bar::Bar;
use crate::order::{Action, Fill, Level, OrderIntent, OrderType, Side, TimeInForce};

/// The longest symbol a strategy may name, in bytes.
pub const MAX_SYMBOL_LEN: usize = 64;
/// The longest notification text kept, in bytes.
pub const MAX_NOTIFY_LEN: usize = 4096;
/// Notification text one call may return, in bytes; notifications past it
/// are dropped and counted, not a fault.
pub const MAX_NOTIFY_BYTES_PER_CALL: usize = 64 << 10;

/// What is left of one call's notification budget.
pub struct NotifyBudget {
    left: usize,
    /// The strategy's log bytes per minute, in host mode.
    per_minute: Option<Arc<LogRate>>,
    pub dropped: usize,
}

impl NotifyBudget {
    pub fn new(per_minute: Option<Arc<LogRate>>) -> Self {
        Self { left: MAX_NOTIFY_BYTES_PER_CALL, per_minute, dropped: 0 }
    }

    /// Whether `action` fits: anything but a notification always does.
    pub fn admit(&mut self, action: &Action) -> bool {
        let Action::Notify { message, .. } = action else { return true };
        let cost = message.len().max(1);
        if cost > self.left || self.per_minute.as_ref().is_some_and(|rate| !rate.admit(cost)) {
            self.dropped += 1;
            return false;
        }
        self.left -= cost;
        true
    }
}

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

/// The longest guest-supplied text an error, a log line, the journal or
/// `/health` repeats, in bytes; the rest is cut, with a marker.
pub const MAX_GUEST_TEXT: usize = 512;

/// `text` cut to [`MAX_GUEST_TEXT`] bytes, saying how much was cut.
pub fn bounded(text: &str) -> String {
    if text.len() <= MAX_GUEST_TEXT {
        return text.to_string();
    }
    let mut cut = text.to_string();
    truncate_utf8(&mut cut, MAX_GUEST_TEXT);
    let dropped = text.len() - cut.len();
    cut.push_str(&format!("… [{dropped} more bytes cut]"));
    cut
}

/// The columns of a batch, kept between batches so a batch allocates
/// nothing once the columns have grown to its size.
pub struct Columns {
    pub bars: wit::Bars,
    /// The batch's symbols as the host holds them, parallel to `bars.symbols`.
    symbols: Vec<Arc<str>>,
}

impl Default for Columns {
    fn default() -> Self {
        Self {
            bars: wit::Bars {
                symbols: Vec::new(),
                price_scale: Vec::new(),
                volume_scale: Vec::new(),
                symbol: Vec::new(),
                time: Vec::new(),
                open: Vec::new(),
                high: Vec::new(),
                low: Vec::new(),
                close: Vec::new(),
                volume: Vec::new(),
            },
            symbols: Vec::new(),
        }
    }
}

/// The largest symbol table one batch may carry (the index is a `u16`).
const MAX_SYMBOLS_PER_BATCH: usize = u16::MAX as usize + 1;

impl Columns {
    /// Fills the columns from `bars`: one scale per symbol for prices and
    /// one for volumes, each the largest the symbol's values use, so every
    /// value is exact. A value that cannot be written at that scale in 64
    /// bits is refused, never rounded.
    pub fn fill(&mut self, bars: &[Bar]) -> Result<&wit::Bars, ContractError> {
        let b = &mut self.bars;
        for column in [&mut b.time, &mut b.open, &mut b.high, &mut b.low, &mut b.close, &mut b.volume] {
            column.clear();
            column.reserve(bars.len());
        }
        b.symbol.clear();
        self.symbols.clear();
        b.price_scale.clear();
        b.volume_scale.clear();
        // Pass 1: the symbol table and each symbol's scales.
        let mut last: Option<(&Arc<str>, u16)> = None;
        for bar in bars {
            let index = match last {
                Some((symbol, index)) if Arc::ptr_eq(symbol, &bar.symbol) || **symbol == *bar.symbol => index,
                _ => {
                    let index = match self.symbols.iter().position(|s| **s == *bar.symbol) {
                        Some(at) => at,
                        None if self.symbols.len() < MAX_SYMBOLS_PER_BATCH => {
                            self.symbols.push(bar.symbol.clone());
                            b.price_scale.push(0);
                            b.volume_scale.push(0);
                            self.symbols.len() - 1
                        }
                        None => return Err(ContractError(format!("a batch has over {MAX_SYMBOLS_PER_BATCH} symbols"))),
                    };
                    let index = index as u16;
                    last = Some((&bar.symbol, index));
                    index
                }
            };
            let i = usize::from(index);
            let price = [bar.open, bar.high, bar.low, bar.close].iter().map(Decimal::scale).max().unwrap_or(0);
            b.price_scale[i] = b.price_scale[i].max(price as u8);
            b.volume_scale[i] = b.volume_scale[i].max(bar.volume.scale() as u8);
            b.symbol.push(index);
        }
        // Pass 2: the values, at their symbol's scales.
        for (bar, &index) in bars.iter().zip(&b.symbol) {
            let i = usize::from(index);
            let (price, volume) = (b.price_scale[i], b.volume_scale[i]);
            b.time.push(bar.time);
            b.open.push(at_scale(bar.open, price)?);
            b.high.push(at_scale(bar.high, price)?);
            b.low.push(at_scale(bar.low, price)?);
            b.close.push(at_scale(bar.close, price)?);
            b.volume.push(at_scale(bar.volume, volume)?);
        }
        b.symbols.clear();
        b.symbols.extend(self.symbols.iter().map(|s| s.to_string()));
        Ok(&self.bars)
    }
}

/// `value`'s mantissa at `scale` (at least its own), if it fits 64 bits.
fn at_scale(value: Decimal, scale: u8) -> Result<i64, ContractError> {
    // Powers of ten a 64-bit mantissa can be multiplied by.
    const POW10: [i128; 19] = {
        let mut table = [1_i128; 19];
        let mut i = 1;
        while i < table.len() {
            table[i] = table[i - 1] * 10;
            i += 1;
        }
        table
    };
    let shift = u32::from(scale).saturating_sub(value.scale()) as usize;
    let mantissa = value.mantissa();
    if shift == 0 {
        // The common case: every value of a symbol has the same scale.
        return i64::try_from(mantissa)
            .map_err(|_| ContractError(format!("{value} does not fit a 64-bit mantissa at scale {scale}")));
    }
    POW10
        .get(shift)
        .and_then(|&factor| mantissa.checked_mul(factor))
        .and_then(|m| i64::try_from(m).ok())
        .ok_or_else(|| ContractError(format!("{value} does not fit a 64-bit mantissa at scale {scale}")))
}

fn side_to_wit(side: Side) -> wit::Side {
    match side {
        Side::Buy => wit::Side::Buy,
        Side::Sell => wit::Side::Sell,
    }
}

pub fn fill_to_wit(fill: &Fill) -> Result<wit::Fill, ContractError> {
    Ok(wit::Fill {
        order: fill.intent_id.id,
        symbol: fill.symbol.to_string(),
        side: side_to_wit(fill.side),
        qty: decimal_to_wit(fill.qty)?,
        price: decimal_to_wit(fill.price)?,
        commission: decimal_to_wit(fill.commission)?,
        time: fill.time,
    })
}

pub fn param_to_wit(value: &ParamValue) -> Result<wit::ParamValue, ContractError> {
    Ok(match value {
        ParamValue::Integer { value } => wit::ParamValue::Integer(*value),
        ParamValue::Decimal { value } => wit::ParamValue::Decimal(decimal_to_wit(*value)?),
        ParamValue::Text { value } => wit::ParamValue::Text(value.clone()),
        ParamValue::Boolean { value } => wit::ParamValue::Boolean(*value),
    })
}

pub fn param_from_wit(value: wit::ParamValue) -> Result<ParamValue, ContractError> {
    Ok(match value {
        wit::ParamValue::Integer(value) => ParamValue::Integer { value },
        wit::ParamValue::Decimal(value) => ParamValue::Decimal { value: decimal_from_wit(value)? },
        wit::ParamValue::Text(value) => ParamValue::Text { value },
        wit::ParamValue::Boolean(value) => ParamValue::Boolean { value },
    })
}

pub fn level_from_wit(level: wit::Level) -> Level {
    match level {
        wit::Level::Debug => Level::Debug,
        wit::Level::Info => Level::Info,
        wit::Level::Warning => Level::Warning,
        wit::Level::Error => Level::Error,
        wit::Level::Critical => Level::Critical,
    }
}

/// Checks and converts one action a strategy returned.
pub fn action_from_wit(action: wit::Action) -> Result<Action, ContractError> {
    Ok(match action {
        wit::Action::Submit(order) => Action::Submit { id: order.id, intent: intent_from_wit(order)? },
        wit::Action::Cancel(id) => Action::Cancel { id },
        wit::Action::Notify(n) => {
            let mut message = n.message;
            truncate_utf8(&mut message, MAX_NOTIFY_LEN);
            Action::Notify { level: level_from_wit(n.level), message }
        }
    })
}

fn positive(what: &str, value: wit::Decimal) -> Result<Decimal, ContractError> {
    let value = decimal_from_wit(value)?;
    if value <= Decimal::ZERO {
        return Err(ContractError(format!("{what} must be positive, got {value}")));
    }
    Ok(value)
}

fn intent_from_wit(order: wit::Order) -> Result<OrderIntent, ContractError> {
    let symbol = order.symbol;
    if symbol.is_empty() || symbol.len() > MAX_SYMBOL_LEN || symbol.chars().any(char::is_control) {
        let mut shown = symbol;
        let len = shown.len();
        truncate_utf8(&mut shown, MAX_SYMBOL_LEN);
        return Err(ContractError(format!("invalid symbol {shown:?} ({len} bytes)")));
    }
    let qty = positive("order quantity", order.qty)?;
    let order_type = match order.order_type {
        wit::OrderType::Market => OrderType::Market,
        wit::OrderType::Limit(price) => OrderType::Limit { price: positive("limit price", price)? },
        wit::OrderType::Stop(stop) => OrderType::Stop { stop: positive("stop price", stop)? },
        wit::OrderType::StopLimit(wit::StopLimit { stop, limit }) => {
            OrderType::StopLimit { stop: positive("stop price", stop)?, limit: positive("limit price", limit)? }
        }
    };
    Ok(OrderIntent {
        symbol: Arc::from(symbol),
        side: match order.side {
            wit::Side::Buy => Side::Buy,
            wit::Side::Sell => Side::Sell,
        },
        qty,
        order_type,
        time_in_force: match order.time_in_force {
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
    fn guest_text_is_bounded_with_a_marker() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(1000); // 2,000 bytes
        let cut = bounded(&long);
        assert!(cut.len() < MAX_GUEST_TEXT + 40, "{}", cut.len());
        assert!(cut.ends_with("… [1488 more bytes cut]"), "{cut}");
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
            wit::Action::Submit(wit::Order {
                id: 1,
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
        let long = action_from_wit(intent(&"X".repeat(1 << 20), 1)).unwrap_err();
        assert!(long.0.len() < 100, "the error quotes a cut symbol: {}", long.0.len());
    }

    fn bar(symbol: &Arc<str>, time: i64, close: &str, volume: &str) -> Bar {
        let close: Decimal = close.parse().unwrap();
        Bar {
            symbol: symbol.clone(),
            time,
            open: close,
            high: close,
            low: close,
            close,
            volume: volume.parse().unwrap(),
        }
    }

    #[test]
    fn columns_carry_each_symbol_at_one_exact_scale() {
        let (a, b): (Arc<str>, Arc<str>) = ("AAA".into(), "BBB".into());
        let bars = [bar(&a, 1, "10.5", "100"), bar(&b, 1, "7", "0.25"), bar(&a, 2, "10.25", "3"), bar(&b, 2, "8", "1")];
        let mut columns = Columns::default();
        let out = columns.fill(&bars).unwrap();
        assert_eq!(out.symbols, ["AAA", "BBB"]);
        assert_eq!(out.symbol, [0, 1, 0, 1]);
        assert_eq!((out.price_scale.as_slice(), out.volume_scale.as_slice()), ([2, 0].as_slice(), [0, 2].as_slice()));
        assert_eq!(out.close, [1050, 7, 1025, 8]);
        assert_eq!(out.volume, [100, 25, 3, 100]);
        assert_eq!(out.time, [1, 1, 2, 2]);
        // Reused: a smaller batch leaves nothing of the last one behind.
        let out = columns.fill(&bars[1..2]).unwrap();
        assert_eq!((out.symbols.as_slice(), out.close.as_slice()), (["BBB".to_string()].as_slice(), [7].as_slice()));
    }

    #[test]
    fn columns_refuse_values_that_do_not_fit_at_their_scale() {
        let a: Arc<str> = "AAA".into();
        // Each fits alone, but not at the other's scale.
        let bars = [bar(&a, 1, "9000000000000000000", "1"), bar(&a, 2, "0.5", "1")];
        assert!(Columns::default().fill(&bars).is_err());
        assert!(Columns::default().fill(&bars[..1]).is_ok());
    }
}
