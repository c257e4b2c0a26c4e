//! Binance's user data stream, through the WebSocket API
//! (`wss://ws-api.binance.com:443/ws-api/v3`): the listen keys of
//! `/api/v3/userDataStream` are deprecated for spot, and Binance documents
//! `userDataStream.subscribe.signature` instead.
//!
//! The client sends `{"id", "method": "userDataStream.subscribe.signature",
//! "params": {"apiKey", "timestamp", "signature"}}`, signed as a REST
//! request is (HMAC-SHA256 of `apiKey=...&timestamp=...`), and waits for
//! `{"id", "status": 200, "result": {"subscriptionId"}}`. Events then come
//! as `{"subscriptionId", "event": {"e": "executionReport", ...}}`: each is
//! an order's state after a trade, a cancel or an expiry, with the
//! cumulative filled quantity (`z`) and quote (`Z`). For a cancel, `c` is
//! the cancel request's id and `C` the order's own.

use std::time::Duration;

use rust_decimal::Decimal;
use serde::Deserialize;

use std::sync::Arc;

use super::orders::{BinanceCredentials, VenueClock, sign};
use crate::broker::{OrderNews, OrderStatus, VenueOrder};
use crate::order::Side;
use crate::stream::{Protocol, Socket, StreamError, next_body, send_json};

const VENUE: &str = "binance";

pub struct BinanceUserStream {
    url: String,
    credentials: BinanceCredentials,
    clock: Arc<VenueClock>,
}

impl BinanceUserStream {
    /// The stream at `url`, its subscription timestamped on `clock`, which
    /// the broker keeps measured.
    pub fn new(url: String, credentials: BinanceCredentials, clock: Arc<VenueClock>) -> Self {
        Self { url, credentials, clock }
    }
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    event: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ExecutionReport {
    s: String,
    c: String,
    #[serde(rename = "C", default)]
    original: String,
    #[serde(rename = "S")]
    side: String,
    q: Decimal,
    #[serde(rename = "X")]
    status: String,
    i: i64,
    z: Decimal,
    #[serde(rename = "Z")]
    quote: Decimal,
}

fn malformed(message: String) -> StreamError {
    StreamError::Malformed { message: crate::runtime::bounded(&message) }
}

fn order(report: ExecutionReport) -> Result<VenueOrder, StreamError> {
    let side = match report.side.as_str() {
        "BUY" => Side::Buy,
        "SELL" => Side::Sell,
        other => return Err(malformed(format!("side `{other}`"))),
    };
    let status = match report.status.as_str() {
        "NEW" | "PENDING_NEW" | "PENDING_CANCEL" => OrderStatus::Accepted,
        "PARTIALLY_FILLED" => OrderStatus::PartiallyFilled,
        "FILLED" => OrderStatus::Filled,
        "CANCELED" => OrderStatus::Canceled,
        "EXPIRED" | "EXPIRED_IN_MATCH" => OrderStatus::Expired,
        "REJECTED" => OrderStatus::Rejected,
        other => return Err(malformed(format!("order status `{other}`"))),
    };
    let client_order_id =
        if status == OrderStatus::Canceled && !report.original.is_empty() { report.original } else { report.c };
    let filled_avg_price = match report.quote.checked_div(report.z) {
        _ if report.z.is_zero() => None,
        Some(price) => Some(price),
        None => return Err(malformed(format!("{} over {} is out of range", report.quote, report.z))),
    };
    Ok(VenueOrder {
        venue_order_id: report.i.to_string(),
        client_order_id,
        symbol: report.s,
        side,
        qty: report.q,
        filled_qty: report.z,
        filled_avg_price,
        status,
    })
}

impl Protocol for BinanceUserStream {
    type Item = OrderNews;

    fn venue(&self) -> &'static str {
        VENUE
    }

    fn url(&self) -> &str {
        &self.url
    }

    async fn handshake(&self, socket: &mut Socket, limit: Duration) -> Result<(), StreamError> {
        let timestamp = self.clock.now_ms();
        let payload = format!("apiKey={}&timestamp={timestamp}", self.credentials.api_key);
        let request = serde_json::json!({
            "id": "stratbox-user-stream",
            "method": "userDataStream.subscribe.signature",
            "params": {
                "apiKey": self.credentials.api_key,
                "timestamp": timestamp,
                "signature": sign(&self.credentials.secret, &payload),
            },
        });
        send_json(socket, &request).await?;
        let answer = next_body(socket, limit, "subscription").await?;
        let answer: serde_json::Value = serde_json::from_slice(&answer)
            .map_err(|e| malformed(format!("{e}: {}", crate::venue::excerpt(&answer))))?;
        if answer["status"] == 200 && answer["result"]["subscriptionId"].is_i64() {
            return Ok(());
        }
        let error = &answer["error"];
        let message = format!("{} {}", error["code"], error["msg"].as_str().unwrap_or_default());
        Err(StreamError::Refused { message: crate::runtime::bounded(&message) })
    }

    fn items(&self, message: &[u8]) -> Result<Vec<OrderNews>, StreamError> {
        let message: Message = serde_json::from_slice(message)
            .map_err(|e| malformed(format!("{e}: {}", crate::venue::excerpt(message))))?;
        let Some(event) = message.event.filter(|e| e["e"] == "executionReport") else { return Ok(Vec::new()) };
        let report: ExecutionReport =
            serde_json::from_value(event).map_err(|e| malformed(format!("an execution report: {e}")))?;
        Ok(vec![OrderNews::State { order: order(report)? }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> BinanceUserStream {
        let credentials = BinanceCredentials { api_key: "k".into(), secret: "s".into() };
        BinanceUserStream::new("ws://127.0.0.1:1/ws-api/v3".into(), credentials, Arc::default())
    }

    fn report(status: &str, c: &str, original: &str, z: &str, quote: &str) -> Vec<u8> {
        format!(
            r#"{{"subscriptionId":0,"event":{{"e":"executionReport","E":1,"s":"BTCUSDT","c":"{c}","S":"BUY",
            "o":"LIMIT","f":"GTC","q":"0.50000000","p":"100.0","P":"0.0","x":"TRADE","X":"{status}","r":"NONE",
            "i":42,"l":"0.1","z":"{z}","L":"100","n":"0","N":null,"T":1,"t":7,"w":true,"m":false,"O":1,
            "Z":"{quote}","Y":"10","Q":"0","C":"{original}"}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn execution_reports_read_as_the_order_they_describe() {
        let state = |news: Vec<OrderNews>| match news.as_slice() {
            [OrderNews::State { order }] => order.clone(),
            other => panic!("{other:?}"),
        };
        let order = &state(stream().items(&report("PARTIALLY_FILLED", "sb-1", "", "0.2", "20.2")).unwrap());
        assert_eq!((order.client_order_id.as_str(), order.venue_order_id.as_str()), ("sb-1", "42"));
        assert_eq!((order.status, order.filled_qty), (OrderStatus::PartiallyFilled, "0.2".parse().unwrap()));
        assert_eq!(order.filled_avg_price, Some("101".parse().unwrap()));
        // A cancel names the cancel request in `c`, the order in `C`.
        let canceled = state(stream().items(&report("CANCELED", "cancel-9", "sb-1", "0", "0")).unwrap());
        assert_eq!((canceled.client_order_id.as_str(), canceled.filled_avg_price), ("sb-1", None));
    }

    #[test]
    fn other_events_are_ignored_and_bad_reports_refused() {
        let s = stream();
        let balance = br#"{"subscriptionId":0,"event":{"e":"outboundAccountPosition","E":1,"B":[]}}"#;
        assert!(s.items(balance).unwrap().is_empty());
        assert!(s.items(br#"{"id":"x","status":200,"result":{}}"#).unwrap().is_empty());
        for bad in [
            report("SIDEWAYS", "c", "", "0", "0"),
            b"not json".to_vec(),
            br#"{"event":{"e":"executionReport"}}"#.to_vec(),
        ] {
            assert!(matches!(s.items(&bad), Err(StreamError::Malformed { .. })));
        }
    }
}
