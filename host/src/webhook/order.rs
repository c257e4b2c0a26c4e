//! Orders sent as Standard Webhooks to a route with `action = "order"`.
//!
//! The body is one JSON object:
//!
//! ```json
//! {"symbol": "AAPL", "side": "buy", "qty": "5", "type": "limit", "limit_price": "190.25"}
//! ```
//!
//! `symbol`, `side` (`buy` or `sell`) and `qty` (positive) are required;
//! `type` is `market` (the default), `limit`, `stop` or `stop_limit`. A
//! limit order needs a positive `limit_price`, a stop order a positive
//! `stop_price`, a stop-limit both; a price the type does not take is
//! refused (a market order takes none). Numbers may be JSON numbers or
//! strings; strings keep them exact. Any other key is refused, so a typo
//! never turns into a different order.

use rust_decimal::Decimal;

use super::tradingview::number;
use super::{AlertError, AlertOrder};
use crate::order::{OrderType, Side};

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
    let mut limit = fields.remove("limit_price").filter(|v| !v.is_null());
    let mut stop = fields.remove("stop_price").filter(|v| !v.is_null());
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
    let kind = kind.as_deref().map(str::trim).map(str::to_ascii_lowercase);
    let order_type = match kind.as_deref().unwrap_or("market") {
        "market" => OrderType::Market,
        "limit" => OrderType::Limit { price: price("limit_price", "limit", limit.take())? },
        "stop" => OrderType::Stop { stop: price("stop_price", "stop", stop.take())? },
        "stop_limit" => OrderType::StopLimit {
            stop: price("stop_price", "stop_limit", stop.take())?,
            limit: price("limit_price", "stop_limit", limit.take())?,
        },
        _ => return Err(field("type", "expected market, limit, stop or stop_limit")),
    };
    for (name, extra) in [("limit_price", limit), ("stop_price", stop)] {
        if extra.is_some() {
            return Err(field(name, format!("a {} order takes none", order_type.name())));
        }
    }
    Ok(AlertOrder { symbol, side, qty, order_id: id, order_type })
}

/// The positive price `name` that an order of type `kind` needs.
fn price(name: &'static str, kind: &str, value: Option<serde_json::Value>) -> Result<Decimal, AlertError> {
    let value = value.ok_or_else(|| field(name, format!("a {kind} order needs one")))?;
    let price = number(name, &value)?;
    if price <= Decimal::ZERO {
        return Err(field(name, format!("{price} is not positive")));
    }
    Ok(price)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn market_and_limit_orders() {
        let market = parse_order(br#"{"symbol": "AAPL", "side": "Buy", "qty": 5}"#).unwrap();
        assert_eq!((market.side, market.qty, market.order_type), (Side::Buy, 5.into(), OrderType::Market));
        let limit = parse_order(
            br#"{"symbol": "BTC-USD", "side": "sell", "qty": "0.015", "type": "limit", "limit_price": "42150.50"}"#,
        )
        .unwrap();
        assert_eq!(limit.order_type, OrderType::Limit { price: "42150.50".parse().unwrap() });
        assert_eq!(limit.qty, "0.015".parse().unwrap());
    }

    #[test]
    fn stop_and_stop_limit_orders() {
        let stop =
            parse_order(br#"{"symbol": "AAPL", "side": "sell", "qty": 5, "type": "stop", "stop_price": "181.5"}"#);
        assert_eq!(stop.unwrap().order_type, OrderType::Stop { stop: "181.5".parse().unwrap() });
        let body = br#"{"symbol": "AAPL", "side": "buy", "qty": 5, "type": " Stop_Limit ", "stop_price": 101.5, "limit_price": "102"}"#;
        let stop_limit = parse_order(body).unwrap().order_type;
        assert_eq!(stop_limit, OrderType::StopLimit { stop: "101.5".parse().unwrap(), limit: 102.into() });
        assert_eq!(stop_limit.to_string(), "stop_limit 101.5/102");
        // A null price is an absent one.
        let body = br#"{"symbol": "X", "side": "buy", "qty": 1, "type": "stop", "stop_price": 3, "limit_price": null}"#;
        assert_eq!(parse_order(body).unwrap().order_type, OrderType::Stop { stop: 3.into() });
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
            (r#"{"symbol": "X", "side": "buy", "qty": 1, "type": "trailing_stop"}"#, "type"),
            (r#"{"symbol": "X", "side": "buy", "qty": 1, "type": "limit"}"#, "limit_price"),
            (r#"{"symbol": "X", "side": "buy", "qty": 1, "type": "limit", "limit_price": "-5"}"#, "limit_price"),
            (r#"{"symbol": "X", "side": "buy", "qty": 1, "limit_price": 5}"#, "limit_price"),
            (r#"{"symbol": "X", "side": "buy", "qty": 1, "type": "stop"}"#, "stop_price"),
            (r#"{"symbol": "X", "side": "buy", "qty": 1, "type": "stop", "stop_price": "0"}"#, "stop_price"),
            (r#"{"symbol": "X", "side": "buy", "qty": 1, "type": "stop", "stop_price": "-2"}"#, "stop_price"),
            (r#"{"symbol": "X", "side": "buy", "qty": 1, "type": "stop", "stop_price": "high"}"#, "stop_price"),
            (r#"{"symbol": "X", "side": "buy", "qty": 1, "type": "stop", "stop_price": [2]}"#, "stop_price"),
            (
                r#"{"symbol": "X", "side": "buy", "qty": 1, "type": "stop", "stop_price": 2, "limit_price": 3}"#,
                "limit_price",
            ),
            (
                r#"{"symbol": "X", "side": "buy", "qty": 1, "type": "limit", "limit_price": 3, "stop_price": 2}"#,
                "stop_price",
            ),
            (r#"{"symbol": "X", "side": "buy", "qty": 1, "stop_price": 2}"#, "stop_price"),
            (r#"{"symbol": "X", "side": "buy", "qty": 1, "type": "market", "stop_price": 2}"#, "stop_price"),
            (r#"{"symbol": "X", "side": "buy", "qty": 1, "type": "stop_limit", "limit_price": 3}"#, "stop_price"),
            (r#"{"symbol": "X", "side": "buy", "qty": 1, "type": "stop_limit", "stop_price": 2}"#, "limit_price"),
            (
                r#"{"symbol": "X", "side": "buy", "qty": 1, "type": "stop_limit", "stop_price": 2, "limit_price": -3}"#,
                "limit_price",
            ),
            (
                r#"{"symbol": "X", "side": "buy", "qty": 1, "type": "stop_limit", "stop_price": 0, "limit_price": 3}"#,
                "stop_price",
            ),
            (r#"{"symbol": "X", "side": "buy", "qty": 1, "type": "stop", "stop_price": 2, "stop_price": 3}"#, "body"),
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
