//! Fake Binance kline streams: the combined stream at
//! `/stream?streams=<symbol>@kline_<interval>/...`. Nothing is asked of the
//! client; each published kline goes out as an open update (`"x": false`)
//! and then closed (`"x": true`), wrapped as `{"stream", "data"}`.

use std::collections::HashMap;

use axum::extract::ws::{Message, WebSocket};
use serde_json::{Value, json};

use super::{Shared, VenueState};

pub(super) async fn session(state: Shared, streams: String, mut socket: WebSocket) {
    let names: Vec<String> = streams.split('/').map(str::to_string).collect();
    let well_formed = names.iter().all(|n| {
        n.split_once("@kline_").is_some_and(|(symbol, interval)| {
            !symbol.is_empty() && symbol.chars().all(|c| !c.is_ascii_uppercase()) && !interval.is_empty()
        })
    });
    if names.is_empty() || !well_formed {
        let _ = socket.send(Message::Close(None)).await;
        return;
    }
    let (tx, updates) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    {
        let mut s = state.lock().unwrap();
        s.kline_stream_connections += 1;
        s.kline_subscribers.push((names, tx));
    }
    super::forward(socket, updates, super::Frames::Text).await;
}

/// Publishes `row` (a 12-element REST kline) of `symbol` at `interval`: the
/// REST endpoint serves it, and the stream sends it open, then closed.
pub fn publish(s: &mut VenueState, symbol: &str, interval: &str, row: Value) {
    s.binance_klines.entry(symbol.to_string()).or_default().push(row.clone());
    let name = format!("{}@kline_{interval}", symbol.to_lowercase());
    for closed in [false, true] {
        let k = json!({"t": row[0], "T": row[6], "s": symbol, "i": interval, "f": 1, "L": 2, "o": row[1],
            "c": row[4], "h": row[2], "l": row[3], "v": row[5], "n": row[8], "x": closed, "q": row[7],
            "V": row[9], "Q": row[10], "B": "0"});
        let message = json!({"stream": name, "data": {"e": "kline", "E": row[6], "s": symbol, "k": k}});
        push(s, &name, message.to_string().into_bytes());
    }
}

/// Sends `bytes` to every client listening to stream `name`.
pub fn push(s: &mut VenueState, name: &str, bytes: Vec<u8>) {
    s.kline_subscribers.retain(|(names, tx)| !names.iter().any(|n| n == name) || tx.send(bytes.clone()).is_ok());
}

/// The `streams` query parameter, when a request to `/stream` has one.
pub(super) fn streams(query: &HashMap<String, String>) -> Option<String> {
    query.get("streams").cloned()
}

/// The WebSocket API at `/ws-api/v3`, for the user data stream: the first
/// request must be `userDataStream.subscribe.signature` with the fake's key
/// signed as a REST request is, within `recvWindow` of the fake's clock;
/// execution reports then follow every change to an order.
pub(super) async fn user_data(state: Shared, mut socket: WebSocket) {
    let Ok(Some(Ok(Message::Text(text)))) =
        tokio::time::timeout(std::time::Duration::from_secs(5), socket.recv()).await
    else {
        return;
    };
    let request: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
    let params = &request["params"];
    let (key, timestamp) = (params["apiKey"].as_str().unwrap_or_default(), params["timestamp"].as_i64().unwrap_or(0));
    let payload = format!("apiKey={key}&timestamp={timestamp}");
    let signed =
        params["signature"].as_str() == Some(&stratbox::broker::binance_signature(super::BINANCE_SECRET, &payload));
    let skew = state.lock().unwrap().binance_clock_skew_ms;
    let server = super::now_ms() + skew;
    let refusal = if request["method"] != "userDataStream.subscribe.signature" {
        Some((400, -1100, "Unknown method."))
    } else if key.is_empty() || !signed {
        Some((401, -1022, "Signature for this request is not valid."))
    } else if !(timestamp < server + 1000 && server - timestamp <= 5000) {
        Some((400, -1021, "Timestamp for this request is outside of the recvWindow."))
    } else {
        None
    };
    let answer = match refusal {
        Some((status, code, msg)) => {
            json!({"id": request["id"], "status": status, "error": {"code": code, "msg": msg}})
        }
        None => json!({"id": request["id"], "status": 200, "result": {"subscriptionId": 0}, "rateLimits": []}),
    };
    let _ = socket.send(Message::Text(answer.to_string().into())).await;
    if refusal.is_some() {
        return;
    }
    let (tx, updates) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    {
        let mut s = state.lock().unwrap();
        s.user_stream_connections += 1;
        s.user_subscribers.push(tx);
    }
    super::forward(socket, updates, super::Frames::Text).await;
}

/// Tells the user data stream's clients that `order` (as `GET
/// /api/v3/order` shows it) changed; a cancel carries the cancel request's
/// id in `c` and the order's in `C`, as Binance sends them.
pub fn report(s: &mut VenueState, order: &Value) {
    let canceled = order["status"] == "CANCELED";
    let (c, original) = if canceled {
        (json!(format!("cancel-{}", order["orderId"])), order["clientOrderId"].clone())
    } else {
        (order["clientOrderId"].clone(), json!(""))
    };
    let event = json!({"e": "executionReport", "E": super::now_ms(), "s": order["symbol"], "c": c,
        "S": order["side"], "o": order["type"], "f": "GTC", "q": order["origQty"], "p": order["price"],
        "P": order["stopPrice"], "x": if canceled { "CANCELED" } else { "TRADE" }, "X": order["status"],
        "r": "NONE", "i": order["orderId"], "l": "0", "z": order["executedQty"], "L": "0", "n": "0", "N": null,
        "T": super::now_ms(), "t": -1, "w": true, "m": false, "O": 0, "Z": order["cummulativeQuoteQty"],
        "Y": "0", "Q": "0", "C": original});
    let message = json!({"subscriptionId": 0, "event": event}).to_string().into_bytes();
    s.user_subscribers.retain(|tx| tx.send(message.clone()).is_ok());
}
