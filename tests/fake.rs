//! Fake venue servers on `127.0.0.1:0` that speak the venues' wire formats:
//! Alpaca's paginated stock bars, Binance klines and Kalshi candlesticks.
//! Faults can be queued to make the next answers fail.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

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
    /// Every request's path and query, in order.
    pub requests: Vec<String>,
    /// Alpaca trading: orders as wire JSON, positions, cash.
    pub orders: Vec<Value>,
    pub positions: Vec<Value>,
    pub cash: String,
    /// `POST /v2/orders` requests received.
    pub order_posts: usize,
    /// When set, every accepted order fills at once at this price.
    pub auto_fill: Option<String>,
    /// When set, only the first this-many Alpaca bars are served.
    pub visible_bars: Option<usize>,
    /// Binance orders as wire JSON, and balances as `(asset, free)`.
    pub binance_orders: Vec<Value>,
    pub binance_balances: Vec<(String, String)>,
    /// Kalshi: the key that must have signed each request, orders, positions, balance in cents.
    pub kalshi_public_key: Option<rsa::RsaPublicKey>,
    pub kalshi_orders: Vec<Value>,
    pub kalshi_positions: Vec<Value>,
    pub kalshi_balance: i64,

    pub order_faults: VecDeque<OrderFault>,
    /// Alpaca: the next this-many trading requests are refused with 401,
    /// as while a key is revoked.
    pub revoked: usize,
    /// Alpaca: when set (with `auto_fill`), an accepted order fills only
    /// after this many more trading requests, so fills land between reads.
    pub fill_after_requests: Option<usize>,
    /// Trading requests served, and orders waiting to fill: `(due, index)`.
    pub trading_requests: usize,
    pub fills_due: VecDeque<(usize, usize)>,
}

impl VenueState {
    /// Counts a trading request, refuses it if the key is revoked, and
    /// fills the orders that are due.
    fn trading_request(&mut self) -> Option<Response> {
        self.trading_requests += 1;
        while self.fills_due.front().is_some_and(|(due, _)| *due <= self.trading_requests) {
            let Some((_, index)) = self.fills_due.pop_front() else { break };
            let (Some(price), Some(order)) = (self.auto_fill.clone(), self.orders.get(index).cloned()) else {
                continue;
            };
            let qty: rust_decimal::Decimal = order["qty"].as_str().unwrap_or("0").parse().unwrap_or_default();
            let sign =
                if order["side"] == "sell" { rust_decimal::Decimal::NEGATIVE_ONE } else { rust_decimal::Decimal::ONE };
            move_position(&mut self.positions, order["symbol"].as_str().unwrap_or_default(), sign * qty, &price);
            let order = &mut self.orders[index];
            order["status"] = json!("filled");
            order["filled_qty"] = order["qty"].clone();
            order["filled_avg_price"] = json!(price);
        }
        if self.revoked > 0 {
            self.revoked -= 1;
            return Some(alpaca_error(401, 40110000, "request is not authorized"));
        }
        None
    }
}

/// How the next `POST /v2/orders` goes wrong.
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
    /// Refuse with Alpaca's error body.
    Refuse { status: u16, code: i64, message: String },
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
        state.lock().unwrap().cash = "100000.00".into();
        let app = Router::new()
            .route("/v2/stocks/bars", get(alpaca_bars))
            .route("/api/v3/klines", get(binance_klines))
            .route("/trade-api/v2/series/{series}/markets/{ticker}/candlesticks", get(kalshi_candles))
            .route("/v2/orders", axum::routing::post(alpaca_submit).get(alpaca_open_orders))
            .route("/v2/orders:by_client_order_id", get(alpaca_by_client_id))
            .route("/v2/orders/{id}", axum::routing::delete(alpaca_cancel))
            .route("/v2/positions", get(alpaca_positions))
            .route("/v2/account", get(alpaca_account))
            .route("/api/v3/exchangeInfo", get(binance_exchange_info))
            .route("/api/v3/order", axum::routing::post(binance_order).get(binance_order).delete(binance_order))
            .route("/api/v3/openOrders", get(binance_order))
            .route("/api/v3/account", get(binance_order))
            .route("/trade-api/v2/portfolio/orders", axum::routing::post(kalshi_trade).get(kalshi_trade))
            .route("/trade-api/v2/portfolio/positions", get(kalshi_trade))
            .route("/trade-api/v2/portfolio/balance", get(kalshi_trade))
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
}

/// Records the request and applies a queued fault, if any.
fn intake(state: &Shared, path: &str, query: &HashMap<String, String>) -> Option<Response> {
    let mut s = state.lock().unwrap();
    let mut pairs: Vec<_> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    s.requests.push(format!("{path}?{}", pairs.join("&")));
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

async fn alpaca_bars(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(fault) = intake(&state, "/v2/stocks/bars", &q) {
        return fault;
    }
    if !headers.contains_key("apca-api-key-id") || !headers.contains_key("apca-api-secret-key") {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"code": 40110000, "message": "request is not authorized"})),
        )
            .into_response();
    }
    let symbols: Vec<&str> = q.get("symbols").map(|s| s.split(',').collect()).unwrap_or_default();
    let start = q.get("start").cloned().unwrap_or_default();
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(1000);
    let from: usize = q.get("page_token").and_then(|t| t.parse().ok()).unwrap_or(0);
    let s = state.lock().unwrap();
    let visible = s.visible_bars.unwrap_or(usize::MAX);
    let mut matching: Vec<&(String, Value)> = s
        .alpaca_bars
        .iter()
        .take(visible)
        .filter(|(sym, bar)| symbols.contains(&sym.as_str()) && bar["t"].as_str().unwrap_or("") >= start.as_str())
        .collect();
    matching.sort_by(|a, b| a.0.cmp(&b.0).then(a.1["t"].as_str().cmp(&b.1["t"].as_str())));
    let page = matching.iter().skip(from).take(limit);
    let mut bars: serde_json::Map<String, Value> = serde_json::Map::new();
    for (sym, bar) in page {
        bars.entry(sym.clone()).or_insert_with(|| json!([])).as_array_mut().unwrap().push(bar.clone());
    }
    let next = (from + limit < matching.len()).then(|| (from + limit).to_string());
    axum::Json(json!({"bars": bars, "next_page_token": next})).into_response()
}

async fn binance_klines(State(state): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Some(fault) = intake(&state, "/api/v3/klines", &q) {
        return fault;
    }
    let s = state.lock().unwrap();
    let Some(rows) = q.get("symbol").and_then(|sym| s.binance_klines.get(sym)) else {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"code": -1121, "msg": "Invalid symbol."}))).into_response();
    };
    let start: i64 = q.get("startTime").and_then(|t| t.parse().ok()).unwrap_or(0);
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(500);
    let page: Vec<&Value> = rows.iter().filter(|r| r[0].as_i64().unwrap_or(0) >= start).take(limit).collect();
    axum::Json(json!(page)).into_response()
}

async fn kalshi_candles(
    State(state): State<Shared>,
    Path((series, ticker)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(fault) = intake(&state, &format!("/trade-api/v2/series/{series}/markets/{ticker}/candlesticks"), &q) {
        return fault;
    }
    let s = state.lock().unwrap();
    let Some(candles) = s.kalshi_candles.get(&(series, ticker.clone())) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": {"code": "not_found", "message": "market not found"}})),
        )
            .into_response();
    };
    let start: i64 = q.get("start_ts").and_then(|t| t.parse().ok()).unwrap_or(0);
    let end: i64 = q.get("end_ts").and_then(|t| t.parse().ok()).unwrap_or(i64::MAX);
    let page: Vec<&Value> =
        candles.iter().filter(|c| (start..=end).contains(&c["end_period_ts"].as_i64().unwrap_or(0))).collect();
    axum::Json(json!({"ticker": ticker, "candlesticks": page})).into_response()
}

/// An Alpaca wire bar for minute `minute` after `2024-01-02T14:30:00Z`.
pub fn alpaca_bar(minute: i64, close: &str) -> Value {
    let time = time::OffsetDateTime::from_unix_timestamp(1_704_205_800 + minute * 60).unwrap();
    let t = time.format(&time::format_description::well_known::Rfc3339).unwrap();
    let close: Value = serde_json::from_str(close).unwrap();
    json!({"t": t, "o": close, "h": close, "l": close, "c": close, "v": 100 + minute, "n": 7, "vw": close})
}

/// Milliseconds of `alpaca_bar(minute, ..)`'s open time.
pub fn alpaca_time(minute: i64) -> i64 {
    (1_704_205_800 + minute * 60) * 1000
}

fn alpaca_error(status: u16, code: i64, message: &str) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(json!({"code": code, "message": message}))).into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.contains_key("apca-api-key-id") && headers.contains_key("apca-api-secret-key")
}

async fn alpaca_submit(
    State(state): State<Shared>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if !authorized(&headers) {
        return alpaca_error(401, 40110000, "request is not authorized");
    }
    let fault = {
        let mut s = state.lock().unwrap();
        if let Some(refused) = s.trading_request() {
            return refused;
        }
        s.order_posts += 1;
        s.requests.push("POST /v2/orders".into());
        s.order_faults.pop_front()
    };
    match &fault {
        Some(OrderFault::Status { code, retry_after }) => {
            let mut response = alpaca_error(*code, 50010000, "injected");
            if let Some(seconds) = retry_after {
                response.headers_mut().insert("retry-after", seconds.to_string().parse().unwrap());
            }
            return response;
        }
        Some(OrderFault::Refuse { status, code, message }) => return alpaca_error(*status, *code, message),
        _ => {}
    }
    let order = {
        let mut s = state.lock().unwrap();
        let coid = body["client_order_id"].as_str().unwrap_or_default().to_string();
        if s.orders.iter().any(|o| o["client_order_id"] == coid.as_str()) {
            return alpaca_error(422, 40010001, "client_order_id must be unique");
        }
        let qty = body["qty"].as_str().unwrap_or_default();
        if qty.parse::<f64>().map_or(true, |q| q <= 0.0) {
            return alpaca_error(422, 40010001, "qty must be > 0");
        }
        let order = json!({
            "id": format!("ord-{}", s.orders.len() + 1),
            "client_order_id": coid,
            "symbol": body["symbol"],
            "qty": body["qty"],
            "filled_qty": "0",
            "filled_avg_price": null,
            "side": body["side"],
            "type": body["type"],
            "time_in_force": body["time_in_force"],
            "limit_price": body.get("limit_price").cloned().unwrap_or(Value::Null),
            "status": "accepted",
        });
        let mut order = order;
        if let Some(after) = s.fill_after_requests {
            let due = (s.trading_requests + after, s.orders.len());
            s.fills_due.push_back(due);
        } else if let Some(price) = s.auto_fill.clone() {
            order["status"] = json!("filled");
            order["filled_qty"] = order["qty"].clone();
            order["filled_avg_price"] = json!(price);
            let signed: rust_decimal::Decimal = qty.parse::<rust_decimal::Decimal>().unwrap_or_default()
                * if body["side"] == "sell" { rust_decimal::Decimal::NEGATIVE_ONE } else { rust_decimal::Decimal::ONE };
            move_position(&mut s.positions, body["symbol"].as_str().unwrap_or_default(), signed, &price);
        }
        s.orders.push(order.clone());
        order
    };
    match fault {
        Some(OrderFault::AcceptThen500) => alpaca_error(500, 50010000, "internal error"),
        Some(OrderFault::AcceptThenDrop) => {
            let broken = futures_util::stream::iter([Err::<axum::body::Bytes, std::io::Error>(std::io::Error::other(
                "connection dropped",
            ))]);
            (StatusCode::OK, axum::body::Body::from_stream(broken)).into_response()
        }
        Some(OrderFault::AcceptThenHang(delay)) => {
            tokio::time::sleep(delay).await;
            axum::Json(order).into_response()
        }
        _ => axum::Json(order).into_response(),
    }
}

async fn alpaca_by_client_id(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authorized(&headers) {
        return alpaca_error(401, 40110000, "request is not authorized");
    }
    let mut s = state.lock().unwrap();
    if let Some(refused) = s.trading_request() {
        return refused;
    }
    let coid = q.get("client_order_id").cloned().unwrap_or_default();
    s.requests.push(format!("GET /v2/orders:by_client_order_id?client_order_id={coid}"));
    match s.orders.iter().find(|o| o["client_order_id"] == coid.as_str()) {
        Some(order) => axum::Json(order.clone()).into_response(),
        None => alpaca_error(404, 40410000, "order not found"),
    }
}

async fn alpaca_open_orders(State(state): State<Shared>) -> Response {
    let mut s = state.lock().unwrap();
    if let Some(refused) = s.trading_request() {
        return refused;
    }
    let open: Vec<&Value> = s
        .orders
        .iter()
        .filter(|o| matches!(o["status"].as_str(), Some("accepted" | "new" | "partially_filled")))
        .collect();
    axum::Json(json!(open)).into_response()
}

async fn alpaca_cancel(State(state): State<Shared>, Path(id): Path<String>) -> Response {
    let mut s = state.lock().unwrap();
    match s.orders.iter_mut().find(|o| o["id"] == id.as_str()) {
        Some(order) => {
            order["status"] = json!("canceled");
            StatusCode::NO_CONTENT.into_response()
        }
        None => alpaca_error(404, 40410000, "order not found"),
    }
}

async fn alpaca_positions(State(state): State<Shared>) -> Response {
    let mut s = state.lock().unwrap();
    if let Some(refused) = s.trading_request() {
        return refused;
    }
    axum::Json(json!(s.positions)).into_response()
}

async fn alpaca_account(State(state): State<Shared>) -> Response {
    let mut s = state.lock().unwrap();
    if let Some(refused) = s.trading_request() {
        return refused;
    }
    let cash = s.cash.clone();
    axum::Json(json!({"cash": cash, "buying_power": cash})).into_response()
}

/// Moves the fake's position in `symbol` by `signed` at `price`.
fn move_position(positions: &mut Vec<Value>, symbol: &str, signed: rust_decimal::Decimal, price: &str) {
    use rust_decimal::Decimal;
    let current = positions.iter().position(|p| p["symbol"] == symbol);
    let old: Decimal =
        current.map_or(Decimal::ZERO, |i| positions[i]["qty"].as_str().unwrap_or("0").parse().unwrap_or_default());
    let new = old + signed;
    if let Some(i) = current {
        positions.remove(i);
    }
    if !new.is_zero() {
        let side = if new.is_sign_positive() { "long" } else { "short" };
        positions.push(json!({"symbol": symbol, "qty": new.abs().to_string(), "avg_entry_price": price, "side": side}));
    }
}

/// The secret the fake Binance checks signatures with.
pub const BINANCE_SECRET: &str = "fake-binance-secret";
/// Price at which the fake Binance fills market orders.
pub const BINANCE_FILL_PRICE: &str = "100.5";

async fn binance_exchange_info(Query(q): Query<HashMap<String, String>>) -> Response {
    let symbol = q.get("symbol").cloned().unwrap_or_default();
    axum::Json(json!({"symbols": [{"symbol": symbol, "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000", "tickSize": "0.01000000"},
        {"filterType": "LOT_SIZE", "minQty": "0.00100000", "maxQty": "9000.00000000", "stepSize": "0.00100000"}
    ]}]}))
    .into_response()
}

fn binance_error(status: u16, code: i64, msg: &str) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(json!({"code": code, "msg": msg}))).into_response()
}

/// One handler for every signed Binance endpoint: checks the key and the
/// HMAC over the query string, then serves by method and path.
async fn binance_order(
    State(state): State<Shared>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let query = uri.query().unwrap_or_default().to_string();
    let Some((payload, signature)) = query.rsplit_once("&signature=") else {
        return binance_error(400, -1102, "Mandatory parameter 'signature' was not sent.");
    };
    if headers.get("x-mbx-apikey").is_none() {
        return binance_error(401, -2014, "API-key format invalid.");
    }
    if stratbox::broker::binance_signature(BINANCE_SECRET, payload) != signature {
        return binance_error(401, -1022, "Signature for this request is not valid.");
    }
    let params: HashMap<String, String> =
        payload.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let param = |k: &str| params.get(k).cloned().unwrap_or_default();
    let mut s = state.lock().unwrap();
    match (method.as_str(), uri.path()) {
        ("POST", "/api/v3/order") => {
            s.order_posts += 1;
            let fault = s.order_faults.pop_front();
            if let Some(OrderFault::Status { code, .. }) = fault {
                return binance_error(code, -1000, "injected");
            }
            let coid = param("newClientOrderId");
            if s.binance_orders.iter().any(|o| o["clientOrderId"] == coid.as_str()) {
                return binance_error(400, -2010, "Duplicate order sent.");
            }
            let qty: rust_decimal::Decimal = param("quantity").parse().unwrap_or_default();
            let market = param("type") == "MARKET";
            let price: rust_decimal::Decimal = BINANCE_FILL_PRICE.parse().unwrap();
            let order = json!({
                "symbol": param("symbol"), "orderId": s.binance_orders.len() + 1, "clientOrderId": coid,
                "price": params.get("price").cloned().unwrap_or_else(|| "0.00000000".into()),
                "origQty": qty.to_string(),
                "executedQty": if market { qty.to_string() } else { "0".into() },
                "cummulativeQuoteQty": if market { (qty * price).to_string() } else { "0".into() },
                "status": if market { "FILLED" } else { "NEW" },
                "type": param("type"), "side": param("side"),
            });
            s.binance_orders.push(order.clone());
            if matches!(fault, Some(OrderFault::AcceptThen500)) {
                return binance_error(500, -1000, "An unknown error occurred while processing the request.");
            }
            axum::Json(order).into_response()
        }
        ("GET", "/api/v3/order") => {
            let coid = param("origClientOrderId");
            match s
                .binance_orders
                .iter()
                .find(|o| o["clientOrderId"] == coid.as_str() && o["symbol"] == param("symbol").as_str())
            {
                Some(order) => axum::Json(order.clone()).into_response(),
                None => binance_error(400, -2013, "Order does not exist."),
            }
        }
        ("DELETE", "/api/v3/order") => {
            let id: i64 = param("orderId").parse().unwrap_or(-1);
            match s.binance_orders.iter_mut().find(|o| o["orderId"] == id) {
                Some(order) if order["status"] == "NEW" => {
                    order["status"] = json!("CANCELED");
                    axum::Json(order.clone()).into_response()
                }
                _ => binance_error(400, -2011, "Unknown order sent."),
            }
        }
        ("GET", "/api/v3/openOrders") => {
            let open: Vec<&Value> = s.binance_orders.iter().filter(|o| o["status"] == "NEW").collect();
            axum::Json(json!(open)).into_response()
        }
        ("GET", "/api/v3/account") => {
            let balances: Vec<Value> = s
                .binance_balances
                .iter()
                .map(|(a, f)| json!({"asset": a, "free": f, "locked": "0.00000000"}))
                .collect();
            axum::Json(json!({"balances": balances})).into_response()
        }
        _ => binance_error(404, -1000, "not found"),
    }
}

fn kalshi_error(status: u16, code: &str, message: &str) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(json!({"error": {"code": code, "message": message}})))
        .into_response()
}

/// Every Kalshi portfolio endpoint: checks the RSA-PSS signature over
/// `timestamp + METHOD + path`, then serves by method and path.
async fn kalshi_trade(
    State(state): State<Shared>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    use base64::Engine as _;
    use rsa::signature::Verifier as _;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (timestamp, signature) = (header("kalshi-access-timestamp"), header("kalshi-access-signature"));
    let mut s = state.lock().unwrap();
    let Some(public) = s.kalshi_public_key.clone() else { return kalshi_error(500, "no_key", "fake has no key") };
    let verified = base64::engine::general_purpose::STANDARD
        .decode(&signature)
        .ok()
        .and_then(|bytes| rsa::pss::Signature::try_from(bytes.as_slice()).ok())
        .is_some_and(|sig| {
            let message = format!("{timestamp}{}{}", method.as_str(), uri.path());
            rsa::pss::VerifyingKey::<sha2::Sha256>::new(public).verify(message.as_bytes(), &sig).is_ok()
        });
    if header("kalshi-access-key").is_empty() || !verified {
        return kalshi_error(401, "authentication_error", "invalid signature");
    }
    match (method.as_str(), uri.path()) {
        ("POST", "/trade-api/v2/portfolio/orders") => {
            s.order_posts += 1;
            let fault = s.order_faults.pop_front();
            let request: Value = serde_json::from_slice(&body).unwrap_or_default();
            let coid = request["client_order_id"].as_str().unwrap_or_default().to_string();
            if s.kalshi_orders.iter().any(|o| o["client_order_id"] == coid.as_str()) {
                return kalshi_error(409, "order_already_exists", "an order with this client_order_id exists");
            }
            let count = request["count"].as_i64().unwrap_or(0);
            let market = request["type"] == "market";
            let order = json!({
                "order_id": format!("k-{}", s.kalshi_orders.len() + 1), "client_order_id": coid,
                "ticker": request["ticker"], "side": request["side"], "action": request["action"], "type": request["type"],
                "status": if market { "executed" } else { "resting" }, "count": count,
                "fill_count": if market { count } else { 0 }, "remaining_count": if market { 0 } else { count },
                "yes_price": request.get("yes_price").cloned().unwrap_or(json!(50)),
            });
            s.kalshi_orders.push(order.clone());
            if matches!(fault, Some(OrderFault::AcceptThen500)) {
                return kalshi_error(500, "internal", "internal error");
            }
            (StatusCode::CREATED, axum::Json(json!({"order": order}))).into_response()
        }
        ("GET", "/trade-api/v2/portfolio/orders") => {
            let q: HashMap<String, String> = serde_urlencoded_pairs(uri.query().unwrap_or_default());
            let orders: Vec<&Value> = s
                .kalshi_orders
                .iter()
                .filter(|o| q.get("ticker").is_none_or(|t| o["ticker"] == t.as_str()))
                .filter(|o| q.get("status").is_none_or(|st| o["status"] == st.as_str()))
                .collect();
            axum::Json(json!({"orders": orders, "cursor": ""})).into_response()
        }
        ("GET", "/trade-api/v2/portfolio/positions") => {
            axum::Json(json!({"market_positions": s.kalshi_positions})).into_response()
        }
        ("GET", "/trade-api/v2/portfolio/balance") => axum::Json(json!({"balance": s.kalshi_balance})).into_response(),
        _ => kalshi_error(404, "not_found", "not found"),
    }
}

fn serde_urlencoded_pairs(query: &str) -> HashMap<String, String> {
    query.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}
