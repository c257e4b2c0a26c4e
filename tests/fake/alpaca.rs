//! Fake Alpaca: market data (`alpaca-data.yaml`) and trading
//! (`alpaca-trading.yaml`), both under `/work/shared/specs`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::{OrderFault, Shared, intake};

/// Every order status the trading spec's `OrderStatus` enum lists.
pub const ALPACA_ORDER_STATUSES: [&str; 16] = [
    "new",
    "partially_filled",
    "filled",
    "done_for_day",
    "canceled",
    "expired",
    "replaced",
    "pending_cancel",
    "pending_replace",
    "accepted",
    "pending_new",
    "accepted_for_bidding",
    "stopped",
    "rejected",
    "suspended",
    "calculated",
];

/// The states after which an order takes no more updates.
const FINAL: [&str; 5] = ["filled", "canceled", "expired", "replaced", "rejected"];

fn error(status: u16, code: i64, message: &str) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(json!({"code": code, "message": message}))).into_response()
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.contains_key("apca-api-key-id") && headers.contains_key("apca-api-secret-key")
}

fn unauthorized() -> Response {
    error(401, 40110000, "request is not authorized")
}

/// Parses a time parameter as the data spec allows it: RFC 3339 without
/// fractions of a second ("Fractions of a second are not accepted").
fn whole_second_time(text: &str) -> Result<time::OffsetDateTime, String> {
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("`{text}` is not an RFC-3339 time"))?;
    if parsed.nanosecond() != 0 || text.contains('.') {
        return Err(format!("`{text}`: fractions of a second are not accepted"));
    }
    Ok(parsed)
}

pub(super) async fn bars(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(fault) = intake(&state, "/v2/stocks/bars", &q) {
        return fault;
    }
    super::bars_pace(&state).await;
    if !authorized(&headers) {
        return unauthorized();
    }
    let mut range = (None, None);
    for (name, slot) in [("start", &mut range.0), ("end", &mut range.1)] {
        if let Some(text) = q.get(name) {
            match whole_second_time(text) {
                Ok(t) => *slot = Some(t),
                Err(message) => return error(400, 40010001, &format!("invalid {name}: {message}")),
            }
        }
    }
    let Some(symbols) = q.get("symbols").filter(|s| !s.is_empty()) else {
        return error(400, 40010001, "symbols is required");
    };
    if q.get("timeframe").is_none_or(|t| t.is_empty()) {
        return error(400, 40010001, "timeframe is required");
    }
    if q.get("feed").is_some_and(|f| !["iex", "sip", "otc"].contains(&f.as_str())) {
        return error(400, 40010001, "invalid feed");
    }
    let limit: usize = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 1000,
        Some(Ok(l)) if (1..=10_000).contains(&l) => l,
        Some(_) => return error(400, 40010001, "limit must be in range 1-10000"),
    };
    let symbols: Vec<&str> = symbols.split(',').collect();
    let from: usize = q.get("page_token").and_then(|t| t.parse().ok()).unwrap_or(0);
    let s = state.lock().unwrap();
    let visible = s.visible_bars.unwrap_or(usize::MAX);
    let time_of = |bar: &Value| {
        time::OffsetDateTime::parse(bar["t"].as_str().unwrap_or(""), &time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let mut matching: Vec<&(String, Value)> = s
        .alpaca_bars
        .iter()
        .take(visible)
        .filter(|(sym, bar)| {
            let t = time_of(bar);
            symbols.contains(&sym.as_str()) && range.0.is_none_or(|s| t >= s) && range.1.is_none_or(|e| t <= e)
        })
        .collect();
    matching.sort_by(|a, b| a.0.cmp(&b.0).then(time_of(&a.1).cmp(&time_of(&b.1))));
    let page = matching.iter().skip(from).take(limit);
    let mut bars: serde_json::Map<String, Value> = serde_json::Map::new();
    for (sym, bar) in page {
        bars.entry(sym.clone()).or_insert_with(|| json!([])).as_array_mut().unwrap().push(bar.clone());
    }
    let next = (from + limit < matching.len()).then(|| (from + limit).to_string());
    axum::Json(json!({"bars": bars, "next_page_token": next})).into_response()
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

pub(super) async fn submit(
    State(state): State<Shared>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    let fault = {
        let mut s = state.lock().unwrap();
        if let Some(refused) = trading_request(&mut s) {
            return refused;
        }
        s.order_posts += 1;
        s.order_taken_at = s.trading_requests;
        s.requests.push("POST /v2/orders".into());
        s.order_faults.pop_front()
    };
    match &fault {
        Some(OrderFault::Status { code, retry_after }) => {
            let mut response = error(*code, 50010000, "injected");
            if let Some(seconds) = retry_after {
                response.headers_mut().insert("retry-after", seconds.to_string().parse().unwrap());
            }
            return response;
        }
        Some(OrderFault::Refuse { status, code, message }) => return error(*status, *code, message),
        _ => {}
    }
    if let Err(message) = check_order(&body) {
        return error(422, 40010001, &message);
    }
    let order = {
        let mut s = state.lock().unwrap();
        let coid = body["client_order_id"].as_str().unwrap_or_default().to_string();
        if s.orders.iter().any(|o| o["client_order_id"] == coid.as_str()) {
            return error(422, 40010001, "client_order_id must be unique");
        }
        let qty = body["qty"].as_str().unwrap_or_default();
        let mut order = json!({
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
            "stop_price": body.get("stop_price").cloned().unwrap_or(Value::Null),
            "status": "accepted",
        });
        if let Some(after) = s.fill_after_requests {
            let due = (s.trading_requests + after, s.orders.len());
            s.fills_due.push_back(due);
        } else if let Some(price) = s.auto_fill.clone() {
            order["status"] = json!("filled");
            order["filled_qty"] = order["qty"].clone();
            order["filled_avg_price"] = json!(price);
            let signed: Decimal = qty.parse::<Decimal>().unwrap_or_default()
                * if body["side"] == "sell" { Decimal::NEGATIVE_ONE } else { Decimal::ONE };
            move_position(&mut s.positions, body["symbol"].as_str().unwrap_or_default(), signed, &price);
        }
        s.orders.push(order.clone());
        let event = if order["status"] == "filled" { "fill" } else { "new" };
        super::alpaca_stream::push(&mut s, event, &order);
        order
    };
    match fault {
        Some(OrderFault::AcceptThen500) => error(500, 50010000, "internal error"),
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

/// Checks an order request's fields as the trading spec types them:
/// enumerations, numbers as decimal strings, the limit price a limit or
/// stop-limit order needs and the stop price a stop or stop-limit order
/// needs (and no price an order does not take), a client order id of at
/// most 48 characters.
fn check_order(body: &Value) -> Result<(), String> {
    let text = |key: &str| body[key].as_str().ok_or_else(|| format!("{key} is required (as a string)"));
    let one_of = |key: &str, allowed: &[&str]| {
        let value = text(key)?;
        if allowed.contains(&value) { Ok(value) } else { Err(format!("invalid {key} `{value}`")) }
    };
    let positive = |key: &str| {
        let value = text(key)?;
        match value.parse::<Decimal>() {
            Ok(v) if v > Decimal::ZERO => Ok(()),
            _ => Err(format!("{key} `{value}` must be a positive decimal string")),
        }
    };
    text("symbol")?;
    one_of("side", &["buy", "sell"])?;
    let kind = one_of("type", &["market", "limit", "stop", "stop_limit", "trailing_stop"])?;
    one_of("time_in_force", &["day", "gtc", "opg", "cls", "ioc", "fok"])?;
    positive("qty")?;
    match (kind, body.get("limit_price")) {
        ("limit" | "stop_limit", _) => positive("limit_price")?,
        (_, Some(price)) if !price.is_null() => return Err("limit_price is only for limit orders".into()),
        _ => {}
    }
    match (kind, body.get("stop_price")) {
        ("stop" | "stop_limit", _) => positive("stop_price")?,
        (_, Some(price)) if !price.is_null() => return Err("stop_price is only for stop orders".into()),
        _ => {}
    }
    match body.get("client_order_id").map(|c| c.as_str()) {
        Some(Some(coid)) if coid.chars().count() > 48 => Err("client_order_id is longer than 48".into()),
        Some(None) => Err("client_order_id must be a string".into()),
        _ => Ok(()),
    }
}

pub(super) async fn by_client_id(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut s = match trading(&state, &headers) {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
    let coid = q.get("client_order_id").cloned().unwrap_or_default();
    s.requests.push(format!("GET /v2/orders:by_client_order_id?client_order_id={coid}"));
    match s.orders.iter().find(|o| o["client_order_id"] == coid.as_str()) {
        Some(order) => axum::Json(order.clone()).into_response(),
        None => error(404, 40410000, "order not found"),
    }
}

pub(super) async fn by_id(State(state): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let mut s = match trading(&state, &headers) {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
    s.requests.push(format!("GET /v2/orders/{id}"));
    match s.orders.iter().find(|o| o["id"] == id.as_str()) {
        Some(order) => axum::Json(order.clone()).into_response(),
        None => error(404, 40410000, "order not found"),
    }
}

/// `status=open` (the default) lists every order not in a final state;
/// `closed` the others; `all` both.
pub(super) async fn open_orders(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let s = match trading(&state, &headers) {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
    let wanted = q.get("status").map_or("open", String::as_str).to_string();
    if !["open", "closed", "all"].contains(&wanted.as_str()) {
        return error(422, 40010001, "invalid status");
    }
    let listed: Vec<&Value> = s
        .orders
        .iter()
        .filter(|o| {
            let is_final = FINAL.contains(&o["status"].as_str().unwrap_or(""));
            wanted == "all" || (wanted == "open") != is_final
        })
        .collect();
    axum::Json(json!(listed)).into_response()
}

pub(super) async fn cancel(State(state): State<Shared>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !authorized(&headers) {
        return unauthorized();
    }
    let mut s = state.lock().unwrap();
    match s.orders.iter_mut().find(|o| o["id"] == id.as_str()) {
        Some(order) if !FINAL.contains(&order["status"].as_str().unwrap_or("")) => {
            order["status"] = json!("canceled");
            let order = order.clone();
            super::alpaca_stream::push(&mut s, "canceled", &order);
            StatusCode::NO_CONTENT.into_response()
        }
        Some(_) => error(422, 42210000, "order is not cancelable"),
        None => error(404, 40410000, "order not found"),
    }
}

pub(super) async fn positions(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let s = match trading(&state, &headers) {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
    axum::Json(json!(s.positions)).into_response()
}

pub(super) async fn account(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let s = match trading(&state, &headers) {
        Ok(s) => s,
        Err(refused) => return *refused,
    };
    let cash = s.cash.clone();
    axum::Json(json!({"cash": cash, "buying_power": cash})).into_response()
}

/// The fake's state for an authorized trading request, counted (see
/// [`trading_request`]); a refusal if the key is missing or revoked.
fn trading<'a>(
    state: &'a Shared,
    headers: &HeaderMap,
) -> Result<std::sync::MutexGuard<'a, super::VenueState>, Box<Response>> {
    if !authorized(headers) {
        return Err(Box::new(unauthorized()));
    }
    let mut s = state.lock().unwrap();
    match trading_request(&mut s) {
        Some(refused) => Err(Box::new(refused)),
        None => Ok(s),
    }
}

/// Counts an authorized trading request: fills the orders that are due,
/// then refuses it if the key is revoked.
fn trading_request(s: &mut super::VenueState) -> Option<Response> {
    s.trading_requests += 1;
    while s.fills_due.front().is_some_and(|(due, _)| *due <= s.trading_requests) {
        let Some((_, index)) = s.fills_due.pop_front() else { break };
        let Some(price) = s.auto_fill.clone() else { continue };
        fill(s, index, &price);
    }
    if s.revoked > 0 {
        s.revoked -= 1;
        return Some(unauthorized());
    }
    None
}

/// Fills order `index` whole at `price` now, if it is still open, and
/// tells the stream.
pub(super) fn fill(s: &mut super::VenueState, index: usize, price: &str) {
    let Some(order) = s.orders.get(index).cloned() else { return };
    if FINAL.contains(&order["status"].as_str().unwrap_or("")) {
        return;
    }
    let qty: Decimal = order["qty"].as_str().unwrap_or("0").parse().unwrap_or_default();
    let sign = if order["side"] == "sell" { Decimal::NEGATIVE_ONE } else { Decimal::ONE };
    move_position(&mut s.positions, order["symbol"].as_str().unwrap_or_default(), sign * qty, price);
    let order = &mut s.orders[index];
    order["status"] = json!("filled");
    order["filled_qty"] = order["qty"].clone();
    order["filled_avg_price"] = json!(price);
    let order = order.clone();
    super::alpaca_stream::push(s, "fill", &order);
}

/// Moves the fake's position in `symbol` by `signed` at `price`.
fn move_position(positions: &mut Vec<Value>, symbol: &str, signed: Decimal, price: &str) {
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

impl super::FakeVenue {
    /// Fills every open Alpaca order whole at `price` now, as the venue's
    /// matching would, and tells the stream.
    pub fn fill_open_orders(&self, price: &str) {
        let mut s = self.state.lock().unwrap();
        for index in 0..s.orders.len() {
            fill(&mut s, index, price);
        }
    }

    /// Fills the oldest open Alpaca order whole at `price` now; false if
    /// none is open.
    pub fn fill_oldest_open_order(&self, price: &str) -> bool {
        let mut s = self.state.lock().unwrap();
        let open = s.orders.iter().position(|o| !FINAL.contains(&o["status"].as_str().unwrap_or("")));
        open.inspect(|&index| fill(&mut s, index, price)).is_some()
    }

    /// Publishes a bar of `symbol` at `minute`: REST serves it, and the
    /// market data stream sends it.
    pub fn publish_bar(&self, symbol: &str, minute: i64, close: &str) {
        super::alpaca_stream::publish_bar(&mut self.state.lock().unwrap(), symbol, alpaca_bar(minute, close));
    }

    /// Sends `bytes` to the market data stream's client as one message.
    pub fn push_bar_message(&self, bytes: &[u8]) {
        super::alpaca_stream::push_bars_raw(&mut self.state.lock().unwrap(), bytes.to_vec());
    }

    /// Closes the market data stream, as a venue restarting would.
    pub fn drop_bar_streams(&self) {
        self.state.lock().unwrap().bar_subscribers.clear();
    }

    /// Closes every trade-updates stream, as a venue restarting would.
    pub fn drop_streams(&self) {
        self.state.lock().unwrap().stream_subscribers.clear();
    }

    /// Sends `bytes` to every listening stream as one message.
    pub fn push_stream_message(&self, bytes: &[u8]) {
        super::alpaca_stream::push_raw(&mut self.state.lock().unwrap(), bytes.to_vec());
    }

    /// Puts the Alpaca order with client order id `coid` in `status` with
    /// `filled_qty` filled; only a status the spec lists is allowed.
    pub fn set_alpaca_status(&self, coid: &str, status: &str, filled_qty: &str, avg_price: Option<&str>) {
        assert!(ALPACA_ORDER_STATUSES.contains(&status), "`{status}` is not in the spec's OrderStatus enum");
        let mut s = self.state.lock().unwrap();
        let order = s.orders.iter_mut().find(|o| o["client_order_id"] == coid).expect("no such order");
        order["status"] = json!(status);
        order["filled_qty"] = json!(filled_qty);
        order["filled_avg_price"] = json!(avg_price);
    }
}
