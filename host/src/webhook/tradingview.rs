//! TradingView alerts: the JSON an alert template produces.
//!
//! TradingView cannot sign requests, so the shared secret travels in the
//! body as `passphrase` and is compared in constant time. The common
//! template fields are typed; anything else is kept in `extra`.

use std::str::FromStr;

use rust_decimal::Decimal;

use crate::order::{OrderType, Side};

/// Why an alert was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertError {
    #[error("the body is not a JSON object: {0}")]
    Malformed(String),
    #[error("the passphrase is missing or wrong")]
    BadPassphrase,
    #[error("field {field}: {message}")]
    Field { field: &'static str, message: String },
}

/// The `strategy.*` placeholders of a strategy alert.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StrategyFields {
    /// `buy` or `sell`.
    pub order_action: Option<String>,
    pub order_contracts: Option<serde_json::Value>,
    pub order_price: Option<serde_json::Value>,
    pub order_id: Option<String>,
    pub market_position: Option<String>,
}

/// An alert as TradingView sends it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Alert {
    pub ticker: Option<String>,
    pub exchange: Option<String>,
    pub time: Option<String>,
    /// `{{timenow}}`: when the alert fired; with the order id, its dedup key.
    pub timenow: Option<String>,
    pub close: Option<serde_json::Value>,
    pub strategy: StrategyFields,
    /// Every other field of the template, passphrase excluded.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// What an `order`-mode route makes of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertOrder {
    pub symbol: String,
    pub side: Side,
    pub qty: Decimal,
    /// The sender's order id, when it sends one (TradingView's
    /// `strategy.order.id`); part of the dedup key with `timenow`.
    pub order_id: Option<String>,
    /// Its type and prices; a TradingView alert is a market order.
    pub order_type: OrderType,
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// TradingView renders numbers as JSON numbers or as strings, depending on
/// the template; both are accepted, exactly.
pub(super) fn number(field: &'static str, value: &serde_json::Value) -> Result<Decimal, AlertError> {
    let text = match value {
        serde_json::Value::String(s) => s.trim().to_string(),
        serde_json::Value::Number(n) => n.to_string(),
        other => return Err(AlertError::Field { field, message: format!("expected a number, got {other}") }),
    };
    Decimal::from_str(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|_| AlertError::Field { field, message: format!("`{text}` is not a number") })
}

impl Alert {
    /// Parses an alert body and checks its passphrase against `expected`.
    pub fn parse(body: &[u8], expected: &str) -> Result<Self, AlertError> {
        let value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| AlertError::Malformed(e.to_string()))?;
        let serde_json::Value::Object(mut fields) = value else {
            return Err(AlertError::Malformed("expected an object".into()));
        };
        let given = fields.remove("passphrase");
        let given = given.as_ref().and_then(|v| v.as_str()).unwrap_or_default();
        if expected.is_empty() || !constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            return Err(AlertError::BadPassphrase);
        }
        let mut text = |key: &str| fields.remove(key).and_then(|v| v.as_str().map(str::to_string));
        let (ticker, exchange, time, timenow) = (text("ticker"), text("exchange"), text("time"), text("timenow"));
        let close = fields.remove("close");
        let mut strategy = StrategyFields::default();
        if let Some(serde_json::Value::Object(mut s)) = fields.remove("strategy") {
            let mut text = |key: &str| s.remove(key).and_then(|v| v.as_str().map(str::to_string));
            strategy.order_action = text("order_action");
            strategy.order_id = text("order_id");
            strategy.market_position = text("market_position");
            strategy.order_contracts = s.remove("order_contracts");
            strategy.order_price = s.remove("order_price");
        }
        Ok(Alert { ticker, exchange, time, timenow, close, strategy, extra: fields })
    }

    /// The alert as an order: `strategy.order_action`, `ticker` and
    /// `strategy.order_contracts` are required.
    pub fn order(&self) -> Result<AlertOrder, AlertError> {
        let missing = |field: &'static str| AlertError::Field { field, message: "missing".into() };
        let side = match self.strategy.order_action.as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("buy") => Side::Buy,
            Some("sell") => Side::Sell,
            Some(other) => {
                return Err(AlertError::Field {
                    field: "strategy.order_action",
                    message: format!("`{other}` is not buy or sell"),
                });
            }
            None => return Err(missing("strategy.order_action")),
        };
        let symbol = self.ticker.clone().filter(|t| !t.trim().is_empty()).ok_or_else(|| missing("ticker"))?;
        let qty = number(
            "strategy.order_contracts",
            self.strategy.order_contracts.as_ref().ok_or_else(|| missing("strategy.order_contracts"))?,
        )?;
        if qty <= Decimal::ZERO {
            return Err(AlertError::Field {
                field: "strategy.order_contracts",
                message: format!("{qty} is not positive"),
            });
        }
        Ok(AlertOrder { symbol, side, qty, order_id: self.strategy.order_id.clone(), order_type: OrderType::Market })
    }

    /// The alert without its passphrase, as text for a strategy's `on-signal`.
    pub fn payload(&self) -> String {
        let mut value = serde_json::Map::new();
        let fields =
            [("ticker", &self.ticker), ("exchange", &self.exchange), ("time", &self.time), ("timenow", &self.timenow)];
        for (key, field) in fields {
            if let Some(text) = field {
                value.insert(key.into(), text.clone().into());
            }
        }
        if let Some(close) = &self.close {
            value.insert("close".into(), close.clone());
        }
        let s = &self.strategy;
        let strategy: serde_json::Map<String, serde_json::Value> = [
            ("order_action", s.order_action.clone().map(Into::into)),
            ("order_contracts", s.order_contracts.clone()),
            ("order_price", s.order_price.clone()),
            ("order_id", s.order_id.clone().map(Into::into)),
            ("market_position", s.market_position.clone().map(Into::into)),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
        .collect();
        if !strategy.is_empty() {
            value.insert("strategy".into(), strategy.into());
        }
        value.extend(self.extra.clone());
        serde_json::Value::Object(value).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALERT: &str = r#"{"passphrase": "s3cret", "ticker": "BTCUSDT", "exchange": "BINANCE", "time": "2024-01-02T14:30:00Z",
        "close": 42150.5, "strategy": {"order_action": "buy", "order_contracts": "0.015", "order_price": 42150.5,
        "order_id": "Long", "market_position": "long"}, "note": "from the template"}"#;

    #[test]
    fn parses_the_common_template_into_an_order() {
        let alert = Alert::parse(ALERT.as_bytes(), "s3cret").unwrap();
        let order = alert.order().unwrap();
        assert_eq!(
            order,
            AlertOrder {
                symbol: "BTCUSDT".into(),
                side: Side::Buy,
                qty: "0.015".parse().unwrap(),
                order_id: Some("Long".into()),
                order_type: OrderType::Market
            }
        );
        let payload = alert.payload();
        assert!(!payload.contains("s3cret"), "the secret never reaches a strategy: {payload}");
        assert!(
            payload.contains("\"note\":\"from the template\"") && payload.contains("\"order_action\":\"buy\""),
            "{payload}"
        );
    }

    #[test]
    fn refuses_wrong_or_missing_passphrases_and_malformed_bodies() {
        assert_eq!(Alert::parse(ALERT.as_bytes(), "other").unwrap_err(), AlertError::BadPassphrase);
        assert_eq!(Alert::parse(br#"{"ticker": "X"}"#, "s3cret").unwrap_err(), AlertError::BadPassphrase);
        assert_eq!(
            Alert::parse(ALERT.as_bytes(), "").unwrap_err(),
            AlertError::BadPassphrase,
            "an empty secret accepts nothing"
        );
        assert!(matches!(Alert::parse(b"buy BTC now", "s3cret"), Err(AlertError::Malformed(_))));
        assert!(matches!(Alert::parse(b"[1, 2]", "s3cret"), Err(AlertError::Malformed(_))));
    }

    #[test]
    fn an_order_needs_action_ticker_and_a_positive_size() {
        let order = |json: &str| Alert::parse(json.as_bytes(), "p").unwrap().order();
        assert!(order(r#"{"passphrase": "p", "ticker": "X", "strategy": {"order_contracts": 1}}"#).is_err());
        assert!(
            order(r#"{"passphrase": "p", "ticker": "X", "strategy": {"order_action": "hold", "order_contracts": 1}}"#)
                .is_err()
        );
        assert!(order(r#"{"passphrase": "p", "strategy": {"order_action": "sell", "order_contracts": 1}}"#).is_err());
        assert!(
            order(
                r#"{"passphrase": "p", "ticker": "X", "strategy": {"order_action": "sell", "order_contracts": "-2"}}"#
            )
            .is_err()
        );
        assert!(
            order(r#"{"passphrase": "p", "ticker": "X", "strategy": {"order_action": "SELL", "order_contracts": 2}}"#)
                .is_ok()
        );
    }

    #[test]
    fn constant_time_comparison_is_correct() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
