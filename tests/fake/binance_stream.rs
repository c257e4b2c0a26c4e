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
    let (tx, mut updates) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    {
        let mut s = state.lock().unwrap();
        s.kline_stream_connections += 1;
        s.kline_subscribers.push((names, tx));
    }
    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Some(bytes) => {
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            },
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
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
