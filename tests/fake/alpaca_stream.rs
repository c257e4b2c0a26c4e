//! Fake Alpaca trade updates: the `trade_updates` stream at `/stream`, as
//! Alpaca documents it. The client must send `{"action": "auth", "key",
//! "secret"}` first and `{"action": "listen", "data": {"streams": [...]}}`
//! next, each within five seconds; updates then come as binary frames, as
//! the paper API sends them.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use serde_json::{Value, json};

use super::{Shared, VenueState};

/// How long the fake waits for each handshake message.
const HANDSHAKE: Duration = Duration::from_secs(5);

pub(super) async fn stream(State(state): State<Shared>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| session(state, socket))
}

async fn receive(socket: &mut WebSocket) -> Option<Value> {
    loop {
        match tokio::time::timeout(HANDSHAKE, socket.recv()).await.ok()??.ok()? {
            Message::Text(text) => return serde_json::from_str(text.as_str()).ok(),
            Message::Binary(bytes) => return serde_json::from_slice(&bytes).ok(),
            Message::Close(_) => return None,
            Message::Ping(_) | Message::Pong(_) => {}
        }
    }
}

async fn send(socket: &mut WebSocket, value: Value) -> bool {
    socket.send(Message::Binary(value.to_string().into_bytes().into())).await.is_ok()
}

async fn session(state: Shared, mut socket: WebSocket) {
    let refuse = {
        let mut s = state.lock().unwrap();
        s.stream_connections += 1;
        s.stream_refuse
    };
    let authorization =
        |status: &str| json!({"stream": "authorization", "data": {"action": "authenticate", "status": status}});
    let Some(auth) = receive(&mut socket).await else { return };
    let good = auth["action"] == "auth" && auth["key"] == "test-key" && auth["secret"] == "test-secret";
    if refuse || !good {
        send(&mut socket, authorization("unauthorized")).await;
        let _ = socket.send(Message::Close(None)).await;
        return;
    }
    send(&mut socket, authorization("authorized")).await;
    let Some(listen) = receive(&mut socket).await else { return };
    if listen["action"] != "listen" {
        let _ = socket.send(Message::Close(None)).await;
        return;
    }
    let asked = listen["data"]["streams"].as_array().cloned().unwrap_or_default();
    let streams: Vec<&Value> = asked.iter().filter(|s| *s == "trade_updates").collect();
    send(&mut socket, json!({"stream": "listening", "data": {"streams": streams}})).await;
    if streams.is_empty() {
        return;
    }
    let (tx, updates) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    state.lock().unwrap().stream_subscribers.push(tx);
    super::forward(socket, updates, super::Frames::Binary).await;
}

/// Tells every listening client that `order` had `event`.
pub fn push(s: &mut VenueState, event: &str, order: &Value) {
    let message = json!({
        "stream": "trade_updates",
        "data": {
            "event": event,
            "execution_id": format!("exec-{}", s.stream_updates_sent + 1),
            "timestamp": "2026-11-30T15:00:00Z",
            "order": order,
        },
    });
    push_raw(s, message.to_string().into_bytes());
}

/// Sends `bytes` as one message to every listening client.
pub fn push_raw(s: &mut VenueState, bytes: Vec<u8>) {
    s.stream_updates_sent += 1;
    s.stream_subscribers.retain(|tx| tx.send(bytes.clone()).is_ok());
}

/// The market data stream at `/v2/{feed}`: greets, takes `auth` within five
/// seconds, then `subscribe`, and sends each published bar as
/// `[{"T": "b", ...}]`. As Alpaca's plans do, it allows one connection at a
/// time and refuses a second with 406.
pub(super) async fn bars(
    State(state): State<Shared>,
    axum::extract::Path(feed): axum::extract::Path<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |socket| bar_session(state, feed, socket))
}

async fn send_text(socket: &mut WebSocket, value: Value) -> bool {
    socket.send(Message::Text(value.to_string().into())).await.is_ok()
}

async fn bar_session(state: Shared, feed: String, mut socket: WebSocket) {
    let error = |code: u16, msg: &str| json!([{"T": "error", "code": code, "msg": msg}]);
    let busy = {
        let mut s = state.lock().unwrap();
        s.bar_stream_connections += 1;
        s.bar_subscribers.retain(|tx| !tx.is_closed());
        !s.bar_subscribers.is_empty()
    };
    if busy {
        send_text(&mut socket, error(406, "connection limit exceeded")).await;
        let _ = socket.send(Message::Close(None)).await;
        return;
    }
    if feed != "iex" && feed != "sip" {
        let _ = socket.send(Message::Close(None)).await;
        return;
    }
    send_text(&mut socket, json!([{"T": "success", "msg": "connected"}])).await;
    let Some(auth) = receive(&mut socket).await else { return };
    let refuse = state.lock().unwrap().bar_stream_refuse;
    if refuse || auth["action"] != "auth" || auth["key"] != "test-key" || auth["secret"] != "test-secret" {
        send_text(&mut socket, error(402, "auth failed")).await;
        let _ = socket.send(Message::Close(None)).await;
        return;
    }
    send_text(&mut socket, json!([{"T": "success", "msg": "authenticated"}])).await;
    let Some(subscribe) = receive(&mut socket).await else { return };
    if subscribe["action"] != "subscribe" {
        send_text(&mut socket, error(400, "invalid syntax")).await;
        return;
    }
    let list = |key: &str| subscribe[key].as_array().cloned().unwrap_or_default();
    let (bars, updated) = (list("bars"), list("updatedBars"));
    let answer = json!([{"T": "subscription", "trades": [], "quotes": [], "bars": bars, "updatedBars": updated,
        "dailyBars": [], "statuses": [], "lulds": [], "corrections": [], "cancelErrors": []}]);
    send_text(&mut socket, answer).await;
    let (tx, updates) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    {
        let mut s = state.lock().unwrap();
        s.bar_subscribers.push(tx);
        s.bar_symbols = bars.iter().filter_map(|b| b.as_str().map(str::to_string)).collect();
    }
    super::forward(socket, updates, super::Frames::Text).await;
}

/// Sends `bytes` as one message to the bar stream's client, if any.
pub fn push_bars_raw(s: &mut VenueState, bytes: Vec<u8>) {
    s.bar_subscribers.retain(|tx| tx.send(bytes.clone()).is_ok());
}

/// Publishes `bar` (a wire bar of [`super::alpaca_bar`]) for `symbol`: the
/// REST endpoint serves it, and the stream sends it if it is subscribed.
pub fn publish_bar(s: &mut VenueState, symbol: &str, bar: Value) {
    s.alpaca_bars.push((symbol.to_string(), bar.clone()));
    if s.bar_symbols.iter().any(|b| b == symbol) {
        let mut message = bar;
        message["T"] = json!("b");
        message["S"] = json!(symbol);
        push_bars_raw(s, json!([message]).to_string().into_bytes());
    }
}
