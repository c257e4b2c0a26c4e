//! Orders sent as Standard Webhooks to a route with `action = "order"`.
//!
//! The body is one JSON object:
//!
//! ```json
//! {"symbol": "AAPL", "side": "buy", "qty": "5", "type": "limit", "limit_price": "190.25"}
//! ```
//!
//! `symbol`, `side` (`buy` or `sell`) and `qty` (positive) are required;
//! `type` is `market` (the default) or `limit`, and a limit order needs a
//! positive `limit_price` (a market order takes none). Numbers may be JSON
//! numbers or strings; strings keep them exact. Any other key is refused,
//! so a typo never turns into a different order.

use rust_decimal::Decimal;

use super::tradingview::number;
use super::{AlertError, AlertOrder};
use crate::order::Side;

/// Longest symbol accepted.
const MAX_SYMBOL: usize = 32;

fn field(field: &'static str, message: impl Into<String>) -> AlertError {
    AlertError::Field { field, message: message.into() }
}

/// The top-level keys of a JSON object, in order, repeats included (a
/// parsed `Value` would silently keep only the last of a repeated key).
struct Keys(Vec<String>);

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some((key, serde::de::IgnoredAny)) = map.next_entry::<String, serde::de::IgnoredAny>()? {
                    keys.push(key);
                }
                Ok(Keys(keys))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// Parses and checks an order body.
pub fn parse_order(body: &[u8]) -> Result<AlertOrder, AlertError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| AlertError::Malformed(e.to_string()))?;
    if value.is_object() {
        let Keys(mut keys) = serde_json::from_slice(body).map_err(|e| AlertError::Malformed(e.to_string()))?;
        keys.sort();
        if let Some(pair) = keys.windows(2).find(|w| w[0] == w[1]) {
            return Err(AlertError::Field { field: "body", message: format!("key `{}` is given twice", pair[0]) });
        }
    }
    let serde_json::Value::Object(mut fields) = value else {
        return Err(AlertError::Malformed("expected an object".into()));
    };
    let mut text = |name: &'static str| -> Result<Option<String>, AlertError> {
        match fields.remove(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(field(name, format!("expected a string, got {other}"))),
        }
    };
    let symbol = text("symbol")?.ok_or_else(|| field("symbol", "missing"))?;
    let side = text("side")?.ok_or_else(|| field("side", "missing"))?;
    let kind = text("type")?;
    let id = text("id")?;
    let qty = fields.remove("qty").ok_or_else(|| field("qty", "missing"))?;
    let limit = fields.remove("limit_price").filter(|v| !v.is_null());
    if let Some(unknown) = fields.keys().next() {
        return Err(AlertError::Field { field: "body", message: format!("unknown key `{unknown}`") });
    }
    let symbol = symbol.trim().to_string();
    if symbol.is_empty()
        || symbol.chars().count() > MAX_SYMBOL
        || !symbol.chars().all(|c| c.is_ascii_alphanumeric() || "._-/:".contains(c))
    {
        return Err(field("symbol", format!("expected 1 to {MAX_SYMBOL} letters, digits or . _ - / :")));
    }
    let side = match side.trim().to_ascii_lowercase().as_str() {
        "buy" => Side::Buy,
        "sell" => Side::Sell,
        _ => return Err(field("side", "expected buy or sell")),
    };
    let qty = number("qty", &qty)?;
    if qty <= Decimal::ZERO {
        return Err(field("qty", format!("{qty} is not positive")));
    }
    let limit_price = match (kind.as_deref().map(str::trim).map(str::to_ascii_lowercase).as_deref(), limit) {
        (None | Some("market"), None) => None,
        (None | Some("market"), Some(_)) => return Err(field("limit_price", "a market order takes none")),
        (Some("limit"), None) => return Err(field("limit_price", "a limit order needs one")),
        (Some("limit"), Some(price)) => {
            let price = number("limit_price", &price)?;
            if price <= Decimal::ZERO {
                return Err(field("limit_price", format!("{price} is not positive")));
            }
            Some(price)
        }
        (Some(_), _) => return Err(field("type", "expected market or limit")),
    };
    Ok(AlertOrder { symbol, side, qty, order_id: id, limit_price })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn market_and_limit_orders() {
        let market = parse_order(br#"{"symbol": "AAPL", "side": "Buy", "qty": 5}"#).unwrap();
        assert_eq!((market.side, market.qty, market.limit_price), (Side::Buy, 5.into(), None));
        let limit = parse_order(
            br#"{"symbol": "BTC-USD", "side": "sell", "qty": "0.015", "type": "limit", "limit_price": "42150.50"}"#,
        )
        .unwrap();
        assert_eq!(limit.limit_price, Some("42150.50".parse().unwrap()));
        assert_eq!(limit.qty, "0.015".parse().unwrap());
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases = [
            (r#"{"side": "buy", "qty": 1}"#, "symbol"),
            (r#"{"symbol": "", "side": "buy", "qty": 1}"#, "symbol"),
            (r#"{"symbol": "A B", "side": "buy", "qty": 1}"#, "symbol"),
            (r#"{"symbol": 7, "side": "buy", "qty": 1}"#, "symbol"),
            (r#"{"symbol": "X", "side": "hold", "qty": 1}"#, "side"),
            (r#"{"symbol": "X", "qty": 1}"#, "side"),
            (r#"{"symbol": "X", "side": "buy"}"#, "qty"),
            (r#"{"symbol": "X", "side": "buy", "qty": "-1"}"#, "qty"),
            (r#"{"symbol": "X", "side": "buy", "qty": 0}"#, "qty"),
            (r#"{"symbol": "X", "side": "buy", "qty": "lots"}"#, "qty"),
            (r#"{"symbol": "X", "side": "buy", "qty": [1]}"#, "qty"),
            (r#"{"symbol": "X", "side": "buy", "qty": 1, "type": "stop"}"#, "type"),
            (r#"{"symbol": "X", "side": "buy", "qty": 1, "type": "limit"}"#, "limit_price"),
            (r#"{"symbol": "X", "side": "buy", "qty": 1, "type": "limit", "limit_price": "-5"}"#, "limit_price"),
            (r#"{"symbol": "X", "side": "buy", "qty": 1, "limit_price": 5}"#, "limit_price"),
            (r#"{"symbol": "X", "side": "buy", "qty": 1, "qyt": 2}"#, "body"),
            (r#"{"symbol": "X", "side": "buy", "qty": 1, "qty": 1000}"#, "body"),
            (r#"{"symbol": "X", "side": "sell", "side": "buy", "qty": 1}"#, "body"),
        ];
        for (body, name) in cases {
            match parse_order(body.as_bytes()) {
                Err(AlertError::Field { field, .. }) => assert_eq!(field, name, "{body}"),
                other => panic!("{body}: {other:?}"),
            }
        }
        for body in ["", "[]", "\"buy\"", "{", "null"] {
            assert!(matches!(parse_order(body.as_bytes()), Err(AlertError::Malformed(_))), "{body}");
        }
        let long = format!(r#"{{"symbol": "{}", "side": "buy", "qty": 1}}"#, "A".repeat(33));
        assert!(parse_order(long.as_bytes()).is_err());
    }
}
