//! Alpaca's trade updates: `wss://paper-api.alpaca.markets/stream` (or
//! `wss://api.alpaca.markets/stream`), the `trade_updates` stream.
//!
//! The client sends `{"action": "auth", "key", "secret"}` and waits for
//! `{"stream": "authorization", "data": {"status": "authorized"}}`, then
//! `{"action": "listen", "data": {"streams": ["trade_updates"]}}` and waits
//! for `{"stream": "listening", "data": {"streams": [...]}}` naming it.
//! Each update is `{"stream": "trade_updates", "data": {"event", "order",
//! ...}}` whose `order` is the same object `GET /v2/orders` answers with.
//! The paper stream sends its messages as binary frames, the live one as
//! text; both are read.

use std::time::Duration;

use serde::Deserialize;

use super::AlpacaCredentials;
use super::orders::{VENUE, WireOrder, order_from_wire};
use crate::broker::OrderNews;
use crate::stream::{Protocol, Socket, StreamError, next_body, send_json};

pub struct AlpacaTradeStream {
    url: String,
    credentials: AlpacaCredentials,
}

impl AlpacaTradeStream {
    pub fn new(url: String, credentials: AlpacaCredentials) -> Self {
        Self { url, credentials }
    }
}

#[derive(Deserialize)]
struct Envelope {
    stream: String,
    #[serde(default)]
    data: serde_json::Value,
}

#[derive(Deserialize)]
struct Update {
    order: WireOrder,
}

fn envelope(body: &[u8]) -> Result<Envelope, StreamError> {
    serde_json::from_slice(body)
        .map_err(|e| StreamError::Malformed { message: format!("{e}: {}", crate::venue::excerpt(body)) })
}

impl Protocol for AlpacaTradeStream {
    type Item = OrderNews;

    fn venue(&self) -> &'static str {
        VENUE
    }

    fn url(&self) -> &str {
        &self.url
    }

    async fn handshake(&self, socket: &mut Socket, limit: Duration) -> Result<(), StreamError> {
        let auth = serde_json::json!({
            "action": "auth", "key": self.credentials.key_id, "secret": self.credentials.secret_key,
        });
        send_json(socket, &auth).await?;
        let answer = envelope(&next_body(socket, limit, "authorization").await?)?;
        let status = answer.data.get("status").and_then(|s| s.as_str()).unwrap_or_default();
        if answer.stream != "authorization" || status != "authorized" {
            let status = crate::runtime::bounded(status);
            return Err(StreamError::Refused { message: format!("authorization {status:?}") });
        }
        let listen = serde_json::json!({ "action": "listen", "data": { "streams": ["trade_updates"] } });
        send_json(socket, &listen).await?;
        let answer = envelope(&next_body(socket, limit, "listening").await?)?;
        let streams = answer.data.get("streams").and_then(|s| s.as_array());
        let listening = streams.is_some_and(|s| s.iter().any(|s| s == "trade_updates"));
        if answer.stream != "listening" || !listening {
            return Err(StreamError::Refused { message: "trade_updates is not among the streams listened to".into() });
        }
        Ok(())
    }

    fn items(&self, message: &[u8]) -> Result<Vec<OrderNews>, StreamError> {
        let envelope = envelope(message)?;
        if envelope.stream != "trade_updates" {
            return Ok(Vec::new());
        }
        let update: Update = serde_json::from_value(envelope.data)
            .map_err(|e| StreamError::Malformed { message: format!("a trade update: {e}") })?;
        let order = order_from_wire("trade_updates", message, update.order)
            .map_err(|e| StreamError::Malformed { message: e.to_string() })?;
        Ok(vec![OrderNews::State { order }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::{OrderStatus, Side};

    fn stream() -> AlpacaTradeStream {
        let credentials = AlpacaCredentials { key_id: "k".into(), secret_key: "s".into() };
        AlpacaTradeStream::new("ws://127.0.0.1:1/stream".into(), credentials)
    }

    #[test]
    fn a_fill_update_reads_as_the_order_it_carries() {
        let message = br#"{"stream":"trade_updates","data":{"event":"partial_fill","execution_id":"e1",
            "timestamp":"2026-11-30T15:00:00Z","price":"10.5","qty":"4","position_qty":"4",
            "order":{"id":"o1","client_order_id":"sb-1","symbol":"AAPL","qty":"10","filled_qty":"4",
            "filled_avg_price":"10.5","side":"buy","status":"partially_filled","type":"market"}}}"#;
        let news = stream().items(message).unwrap();
        let [OrderNews::State { order }] = news.as_slice() else { panic!("{news:?}") };
        assert_eq!((order.client_order_id.as_str(), order.side), ("sb-1", Side::Buy));
        assert_eq!((order.filled_qty, order.status), (4.into(), OrderStatus::PartiallyFilled));
    }

    #[test]
    fn other_streams_are_ignored_and_bad_updates_refused() {
        let s = stream();
        assert!(s.items(br#"{"stream":"listening","data":{"streams":["trade_updates"]}}"#).unwrap().is_empty());
        for bad in [
            &b"not json"[..],
            br#"{"stream":"trade_updates","data":{"event":"fill"}}"#,
            br#"{"stream":"trade_updates","data":{"event":"fill","order":{"id":"o","client_order_id":"c","symbol":"X","side":"up","status":"filled"}}}"#,
            br#"{"stream":"trade_updates","data":{"event":"fill","order":{"id":"o","client_order_id":"c","symbol":"X","side":"buy","status":"filled","filled_qty":"1e999"}}}"#,
        ] {
            let error = s.items(bad).unwrap_err();
            assert!(matches!(error, StreamError::Malformed { .. }), "{error}");
            assert!(error.to_string().len() < 2_000);
        }
    }
}
