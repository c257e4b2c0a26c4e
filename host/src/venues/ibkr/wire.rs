//! What the gateway's answers have in common: numbers that come as JSON
//! numbers in one endpoint and as strings in the next (`"10.0"`), contract
//! ids the same, and `{"error": "…"}` bodies, sometimes under a 2XX.

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::venue::{ErrorBody, VenueError};

pub(super) const VENUE: &str = "ibkr";

/// A decimal written as a JSON number or a numeric string.
pub(super) fn decimal<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    let value = Value::deserialize(d)?;
    decimal_of(&value).ok_or_else(|| serde::de::Error::custom(format!("`{}` is not a decimal", short(&value))))
}

/// As [`decimal`], where the field may be missing, `null` or `""`.
pub(super) fn decimal_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
    let value = Option::<Value>::deserialize(d)?;
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(value) => decimal_of(&value)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("`{}` is not a decimal", short(&value)))),
    }
}

fn decimal_of(value: &Value) -> Option<Decimal> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    // `10.0` and `10` are one quantity; keep the shorter.
    text.parse::<Decimal>().ok().or_else(|| Decimal::from_scientific(&text).ok()).map(|d| d.normalize())
}

/// An id written as a JSON integer or a string of digits (`conid`,
/// `order_id`), kept as its digits.
pub(super) fn id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let value = Value::deserialize(d)?;
    id_of(&value).ok_or_else(|| serde::de::Error::custom(format!("`{}` is not an id", short(&value))))
}

pub(super) fn id_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(value) => {
            id_of(&value).map(Some).ok_or_else(|| serde::de::Error::custom(format!("`{}` is not an id", short(&value))))
        }
    }
}

fn id_of(value: &Value) -> Option<String> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())).then_some(text)
}

fn short(value: &Value) -> String {
    crate::runtime::bounded(&value.to_string())
}

/// The gateway's own words in an answer that is an error: `{"error": …}`.
pub(super) fn error_text(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    match &value["error"] {
        Value::String(text) => Some(crate::runtime::bounded(text)),
        Value::Null => None,
        other => Some(short(other)),
    }
}

/// What a gateway error body says. A 401 is the brokerage session, not a
/// key: the person running the gateway must log in again.
pub(super) fn error_body(status: u16, body: &[u8]) -> ErrorBody {
    let said = error_text(body);
    let message = if status == 401 {
        Some(format!(
            "the gateway's brokerage session is not authenticated ({}): log in to the Client Portal gateway in a browser",
            said.as_deref().unwrap_or("401")
        ))
    } else {
        said
    };
    ErrorBody { code: None, message, means: None }
}

/// Maps a non-2XX answer (see [`crate::venue::failure`]).
pub(super) fn failure(endpoint: &str, status: u16, body: &[u8]) -> VenueError {
    crate::venue::failure(VENUE, endpoint, status, body, error_body)
}

pub(super) fn malformed(endpoint: &str, body: &[u8], message: impl Into<String>) -> VenueError {
    VenueError::Malformed {
        venue: VENUE,
        endpoint: endpoint.into(),
        body: crate::venue::excerpt(body),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Sample {
        #[serde(deserialize_with = "decimal")]
        qty: Decimal,
        #[serde(default, deserialize_with = "decimal_opt")]
        price: Option<Decimal>,
        #[serde(deserialize_with = "id")]
        conid: String,
    }

    #[test]
    fn numbers_and_ids_read_the_same_as_numbers_or_strings() {
        let a: Sample = serde_json::from_str(r#"{"qty": 10.5, "price": "150.25", "conid": 265598}"#).unwrap();
        let b: Sample = serde_json::from_str(r#"{"qty": "10.5", "price": 150.25, "conid": "265598"}"#).unwrap();
        assert_eq!((a.qty, a.price, &a.conid), (b.qty, b.price, &b.conid));
        assert_eq!(a.price, Some("150.25".parse().unwrap()));
        let none: Sample = serde_json::from_str(r#"{"qty": 1, "price": "", "conid": 1}"#).unwrap();
        assert_eq!(none.price, None);
        assert!(serde_json::from_str::<Sample>(r#"{"qty": "ten", "conid": 1}"#).is_err());
        assert!(serde_json::from_str::<Sample>(r#"{"qty": 1, "conid": "26x"}"#).is_err());
        assert!(serde_json::from_str::<Sample>(r#"{"qty": 1, "conid": -3}"#).is_err());
    }

    #[test]
    fn a_lost_session_says_to_log_in() {
        let err = failure("/iserver/accounts", 401, br#"{"error":"not authenticated","statusCode":401}"#);
        assert!(err.is_unauthorized());
        assert!(err.to_string().contains("log in to the Client Portal gateway"), "{err}");
        let refused = failure("/iserver/account/DU1/orders", 400, br#"{"error":"Order price is invalid"}"#);
        assert!(refused.to_string().contains("Order price is invalid") && !refused.is_retryable(), "{refused}");
    }
}
