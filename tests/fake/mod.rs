//! Fake venue servers on `127.0.0.1:0` that speak the venues' wire formats
//! and hold requests to the venues' published specs, so a request a real
//! venue would refuse is refused here too: Alpaca (`alpaca.rs`), Binance
//! (`binance.rs`) and Kalshi (`kalshi.rs`). Faults can be queued to make
//! the next answers fail.

mod alpaca;
mod alpaca_stream;
mod binance;
mod binance_stream;
mod ibkr;
mod kalshi;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;

pub use self::alpaca::{ALPACA_ORDER_STATUSES, alpaca_bar, alpaca_time};
pub use self::binance::{BINANCE_FILL_PRICE, BINANCE_SECRET, binance_default_filters};
pub use self::ibkr::{FakeGateway, IBKR_ACCOUNT};
pub use self::kalshi::{KALSHI_FILL_CENTS, KALSHI_MAX_CANDLES};

/// A way to fail the next request.
#[derive(Debug, Clone)]
pub enum Fault {
    Status { code: u16, retry_after: Option<u64> },
    Malformed,
}

#[derive(Default)]
pub struct VenueState {
    /// Alpaca bars as `(symbol, wire bar)`; served sorted by symbol, then time.
    pub alpaca_bars: Vec<(String, Value)>,
    /// Binance klines per symbol, 12-element rows.
    pub binance_klines: HashMap<String, Vec<Value>>,
    /// Kalshi candles per `(series, ticker)`.
    pub kalshi_candles: HashMap<(String, String), Vec<Value>>,
    pub faults: VecDeque<Fault>,
    /// Queued faults wait until this many requests have been served.
    pub faults_after: usize,
    /// How long each bars request takes to answer, as a slow venue's would.
    pub bars_delay: Option<std::time::Duration>,
    /// Every request's path and query, in order.
    pub requests: Vec<String>,
    /// Alpaca trading: orders as wire JSON, positions, cash.
    pub orders: Vec<Value>,
    pub positions: Vec<Value>,
    pub cash: String,
    /// `POST` order requests received, whatever came of them.
    pub order_posts: usize,
    /// When set, every accepted order fills at once at this price.
    pub auto_fill: Option<String>,
    /// When set, only the first this-many Alpaca bars are served.
    pub visible_bars: Option<usize>,
    /// Binance orders as wire JSON, and balances as `(asset, free)`.
    pub binance_orders: Vec<Value>,
    pub binance_balances: Vec<(String, String)>,
    /// Binance symbol filters served by `exchangeInfo` and enforced on orders.
    pub binance_filters: Vec<Value>,
    /// How far the fake Binance's clock is ahead of this machine's, in ms.
    pub binance_clock_skew_ms: i64,
    /// How far `GET /api/v3/time` misreports the fake Binance's own clock.
    pub binance_time_error_ms: i64,
    /// Kalshi: the key that must have signed each request, orders, positions, balance in cents.
    pub kalshi_public_key: Option<rsa::RsaPublicKey>,
    pub kalshi_orders: Vec<Value>,
    pub kalshi_positions: Vec<Value>,
    pub kalshi_balance: i64,
    /// Most items per page of a Kalshi list, whatever `limit` asks (0: no cap).
    pub kalshi_page_cap: usize,

    pub order_faults: VecDeque<OrderFault>,
    /// Alpaca: the next this-many trading requests are refused with 401,
    /// as while a key is revoked.
    pub revoked: usize,
    /// Alpaca: when set (with `auto_fill`), an accepted order fills only
    /// after this many more trading requests, so fills land between reads.
    pub fill_after_requests: Option<usize>,
    /// Alpaca trading requests served, and orders waiting to fill: `(due, index)`.
    pub trading_requests: usize,
    /// Alpaca: `trading_requests` when the latest order was taken; a sync
    /// since then has read more.
    pub order_taken_at: usize,
    pub fills_due: VecDeque<(usize, usize)>,
    /// Alpaca: clients listening to `trade_updates`, each a queue of messages.
    pub stream_subscribers: Vec<tokio::sync::mpsc::UnboundedSender<Vec<u8>>>,
    /// Alpaca: stream connections opened, and updates sent.
    pub stream_connections: usize,
    pub stream_updates_sent: usize,
    /// Alpaca: answer every stream handshake `unauthorized`.
    pub stream_refuse: bool,
    /// Alpaca market data stream: its client, the symbols it subscribed to,
    /// connections opened, and whether to refuse the key.
    pub bar_subscribers: Vec<tokio::sync::mpsc::UnboundedSender<Vec<u8>>>,
    pub bar_symbols: Vec<String>,
    pub bar_stream_connections: usize,
    pub bar_stream_refuse: bool,
    /// Binance kline streams: each client's stream names and queue, and
    /// connections opened.
    pub kline_subscribers: Vec<(Vec<String>, tokio::sync::mpsc::UnboundedSender<Vec<u8>>)>,
    pub kline_stream_connections: usize,
    /// Binance user data stream: its clients, and connections subscribed.
    pub user_subscribers: Vec<tokio::sync::mpsc::UnboundedSender<Vec<u8>>>,
    pub user_stream_connections: usize,
    /// Kalshi fill stream: its clients, and connections subscribed.
    pub fill_subscribers: Vec<tokio::sync::mpsc::UnboundedSender<Vec<u8>>>,
    pub fill_stream_connections: usize,
    /// Kalshi trade channel: each client's markets (every market when
    /// empty) and queue, and connections subscribed.
    pub trade_subscribers: Vec<(Vec<String>, tokio::sync::mpsc::UnboundedSender<Vec<u8>>)>,
    pub trade_stream_connections: usize,
    /// Kalshi: market orders rest (an empty book) instead of executing at once.
    pub kalshi_rest_market: bool,
}

/// How the next order request goes wrong.
#[derive(Debug, Clone)]
pub enum OrderFault {
    /// Accept the order, then answer 500: the client cannot know it landed.
    AcceptThen500,
    /// Accept the order, then drop the connection mid-answer.
    AcceptThenDrop,
    /// Accept the order, then answer only after this long.
    AcceptThenHang(std::time::Duration),
    /// Answer with this status without taking the order.
    Status { code: u16, retry_after: Option<u64> },
    /// Refuse with the venue's error body and a numeric code.
    Refuse { status: u16, code: i64, message: String },
    /// Refuse with Kalshi's error body and a symbolic code.
    RefuseNamed { status: u16, code: String, message: String },
}

pub struct FakeVenue {
    pub url: String,
    pub state: Arc<Mutex<VenueState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeVenue {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Shared = Arc<Mutex<VenueState>>;

impl FakeVenue {
    pub async fn start() -> Self {
        let state: Shared = Arc::default();
        {
            let mut s = state.lock().unwrap();
            s.cash = "100000.00".into();
            s.binance_filters = binance_default_filters();
        }
        let app = Router::new()
            .route("/v2/stocks/bars", get(alpaca::bars))
            .route("/api/v3/klines", get(binance::klines))
            .route("/trade-api/v2/series/{series}/markets/{ticker}/candlesticks", get(kalshi::candles))
            .route("/v2/orders", axum::routing::post(alpaca::submit).get(alpaca::open_orders))
            .route("/v2/orders:by_client_order_id", get(alpaca::by_client_id))
            .route("/v2/orders/{id}", axum::routing::delete(alpaca::cancel).get(alpaca::by_id))
            .route("/v2/positions", get(alpaca::positions))
            .route("/v2/account", get(alpaca::account))
            .route("/stream", get(stream))
            .route("/trade-api/ws/v2", get(kalshi::websocket))
            .route(
                "/ws-api/v3",
                get(
                    |axum::extract::State(state): axum::extract::State<Shared>,
                     upgrade: axum::extract::ws::WebSocketUpgrade| async move {
                        upgrade.on_upgrade(move |socket| binance_stream::user_data(state, socket))
                    },
                ),
            )
            .route("/v2/{feed}", get(alpaca_stream::bars))
            .route("/api/v3/exchangeInfo", get(binance::exchange_info))
            .route("/api/v3/time", get(binance::time))
            .route("/api/v3/avgPrice", get(binance::avg_price))
            .route("/api/v3/order", axum::routing::post(binance::signed).get(binance::signed).delete(binance::signed))
            .route("/api/v3/openOrders", get(binance::signed))
            .route("/api/v3/account", get(binance::signed))
            .route("/trade-api/v2/portfolio/orders", axum::routing::post(kalshi::trade).get(kalshi::trade))
            .route("/trade-api/v2/portfolio/orders/{id}", get(kalshi::trade).delete(kalshi::trade))
            .route("/trade-api/v2/portfolio/positions", get(kalshi::trade))
            .route("/trade-api/v2/portfolio/balance", get(kalshi::trade))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, state, task }
    }

    pub fn fail_next_order(&self, fault: OrderFault) {
        self.state.lock().unwrap().order_faults.push_back(fault);
    }

    pub fn fail_next(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push_back(fault);
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// How many requests went to `path` (query excluded).
    pub fn requests_to(&self, path: &str) -> usize {
        self.requests().iter().filter(|r| r.split('?').next() == Some(path) || r.ends_with(&format!(" {path}"))).count()
    }
}

/// `/stream`: Binance's combined kline streams when `streams` is asked for,
/// else Alpaca's trade updates.
async fn stream(
    axum::extract::State(state): axum::extract::State<Shared>,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    match binance_stream::streams(&query) {
        Some(streams) => upgrade.on_upgrade(move |socket| binance_stream::session(state, streams, socket)),
        None => alpaca_stream::stream(axum::extract::State(state), upgrade).await,
    }
}

impl FakeVenue {
    /// Publishes a 12-element REST kline of `symbol` (1m): REST serves it,
    /// and the kline stream sends it open, then closed.
    pub fn publish_kline(&self, symbol: &str, row: Value) {
        binance_stream::publish(&mut self.state.lock().unwrap(), symbol, "1m", row);
    }

    /// Fills every open Binance order whole at the fake's price now, and
    /// reports it on the user data stream.
    pub fn fill_binance_open_orders(&self) {
        let mut s = self.state.lock().unwrap();
        let fill: rust_decimal::Decimal = BINANCE_FILL_PRICE.parse().unwrap();
        for index in 0..s.binance_orders.len() {
            if s.binance_orders[index]["status"] != "NEW" {
                continue;
            }
            let order = &mut s.binance_orders[index];
            let qty: rust_decimal::Decimal = order["origQty"].as_str().unwrap_or("0").parse().unwrap_or_default();
            order["status"] = serde_json::json!("FILLED");
            order["executedQty"] = serde_json::json!(qty.to_string());
            order["cummulativeQuoteQty"] = serde_json::json!((qty * fill).to_string());
            let order = order.clone();
            binance::fill_balances(&mut s, &order, qty, fill);
            binance_stream::report(&mut s, &order);
        }
    }

    /// Closes every kline stream, as Binance does after 24 hours.
    pub fn drop_kline_streams(&self) {
        self.state.lock().unwrap().kline_subscribers.clear();
    }

    /// Sends `bytes` to every client of kline stream `name`.
    pub fn push_kline_message(&self, name: &str, bytes: &[u8]) {
        binance_stream::push(&mut self.state.lock().unwrap(), name, bytes.to_vec());
    }
}

/// How a fake stream frames its messages.
#[derive(Clone, Copy)]
pub(super) enum Frames {
    Text,
    /// As Alpaca's paper trade updates come.
    Binary,
}

/// Sends a client every message queued for it, until the test drops its
/// queue (the venue closes the stream) or the client leaves.
pub(super) async fn forward(
    mut socket: axum::extract::ws::WebSocket,
    mut updates: tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
    frames: Frames,
) {
    use axum::extract::ws::Message;
    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Some(bytes) => {
                    let message = match frames {
                        Frames::Binary => Message::Binary(bytes.into()),
                        Frames::Text => Message::Text(String::from_utf8_lossy(&bytes).into_owned().into()),
                    };
                    if socket.send(message).await.is_err() {
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

/// Records the request and applies a queued fault, if any.
fn intake(state: &Shared, path: &str, query: &HashMap<String, String>) -> Option<Response> {
    let mut s = state.lock().unwrap();
    let mut pairs: Vec<_> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    s.requests.push(format!("{path}?{}", pairs.join("&")));
    if s.requests.len() <= s.faults_after {
        return None;
    }
    match s.faults.pop_front()? {
        Fault::Status { code, retry_after } => {
            let mut response = (StatusCode::from_u16(code).unwrap(), "{\"message\":\"injected\"}").into_response();
            if let Some(seconds) = retry_after {
                response.headers_mut().insert("retry-after", seconds.to_string().parse().unwrap());
            }
            Some(response)
        }
        Fault::Malformed => Some((StatusCode::OK, "{\"bars\": [not json").into_response()),
    }
}

/// Waits as long as a slow venue takes to answer a bars request.
async fn bars_pace(state: &Shared) {
    let delay = state.lock().unwrap().bars_delay;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
}

/// Splits a raw query string into its decoded pairs.
fn query_pairs(query: &str) -> HashMap<String, String> {
    query.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (percent_decode(k), percent_decode(v))).collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => out.push(b),
                    None => out.extend_from_slice(&bytes[i..i + 3]),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}
