//! Kalshi's fills over its WebSocket API: `wss://api.elections.kalshi.com/
//! trade-api/ws/v2`, the `fill` channel.
//!
//! The opening request is signed as a REST request is: `KALSHI-ACCESS-KEY`,
//! `KALSHI-ACCESS-TIMESTAMP` and an RSA-PSS `KALSHI-ACCESS-SIGNATURE` of
//! `timestamp + "GET" + "/trade-api/ws/v2"`. The client then sends
//! `{"id", "cmd": "subscribe", "params": {"channels": ["fill"]}}` and waits
//! for `{"id", "type": "subscribed"}`. Each fill is `{"type": "fill", "msg":
//! {"order_id", "market_ticker", "count", ...}}`: one trade, not the order's
//! state, so the desk reads the order (by its id) and settles that, as a
//! sync would.

use std::time::Duration;

use super::orders::KalshiCredentials;
use crate::broker::OrderNews;
use super::socket::{self, malformed};
use crate::stream::{Protocol, Socket, StreamError};

const VENUE: &str = "kalshi";

pub struct KalshiFillStream {
    url: String,
    credentials: KalshiCredentials,
}

impl KalshiFillStream {
    pub fn new(url: String, credentials: KalshiCredentials) -> Self {
        Self { url, credentials }
    }
}

impl Protocol for KalshiFillStream {
    type Item = OrderNews;

    fn venue(&self) -> &'static str {
        VENUE
    }

    fn url(&self) -> &str {
        &self.url
    }

    fn request(&self) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request, StreamError> {
        socket::request(&self.credentials, &self.url)
    }

    async fn handshake(&self, socket: &mut Socket, limit: Duration) -> Result<(), StreamError> {
        socket::subscribe(socket, limit, "fill", serde_json::json!({})).await
    }

    fn items(&self, message: &[u8]) -> Result<Vec<OrderNews>, StreamError> {
        let message: serde_json::Value = serde_json::from_slice(message)
            .map_err(|e| malformed(format!("{e}: {}", crate::venue::excerpt(message))))?;
        if message["type"] != "fill" {
            return Ok(Vec::new());
        }
        let text = |key: &str| message["msg"][key].as_str().filter(|t| !t.is_empty()).map(str::to_string);
        match (text("market_ticker"), text("order_id")) {
            (Some(symbol), Some(venue_order_id)) => Ok(vec![OrderNews::Changed { symbol, venue_order_id }]),
            _ => Err(malformed("a fill without its market_ticker or order_id".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> KalshiFillStream {
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 1024).unwrap();
        KalshiFillStream::new("ws://127.0.0.1:1/trade-api/ws/v2".into(), KalshiCredentials::from_key("id".into(), key))
    }

    #[test]
    fn a_fill_names_the_order_to_read() {
        let s = stream();
        let fill = br#"{"type":"fill","sid":13,"msg":{"trade_id":"t","order_id":"k-1","market_ticker":"KXBTC-1",
            "is_taker":true,"side":"yes","yes_price":75,"count":3,"action":"buy","ts":1671899397}}"#;
        let news = s.items(fill).unwrap();
        assert_eq!(news, vec![OrderNews::Changed { symbol: "KXBTC-1".into(), venue_order_id: "k-1".into() }]);
        assert!(s.items(br#"{"type":"subscribed","msg":{"channel":"fill","sid":1}}"#).unwrap().is_empty());
        for bad in [&b"nope"[..], br#"{"type":"fill","msg":{"order_id":"k-1"}}"#] {
            assert!(matches!(s.items(bad), Err(StreamError::Malformed { .. })));
        }
        let request = s.request().unwrap();
        for header in ["KALSHI-ACCESS-KEY", "KALSHI-ACCESS-TIMESTAMP", "KALSHI-ACCESS-SIGNATURE"] {
            assert!(request.headers().contains_key(header), "{header}");
        }
    }
}
