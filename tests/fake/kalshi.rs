//! Fake Kalshi: candlesticks with the per-request cap, and the signed
//! portfolio API with cursor paging and fill costs on orders.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{OrderFault, Shared, intake, query_pairs};

/// Most candlesticks one request may span; a wider range is refused.
pub const KALSHI_MAX_CANDLES: i64 = 5000;
/// What one contract of a market order costs at the fake, in cents.
pub const KALSHI_FILL_CENTS: i64 = 57;

fn error(status: u16, code: &str, message: &str) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(json!({"error": {"code": code, "message": message}})))
        .into_response()
}

pub(super) async fn candles(
    State(state): State<Shared>,
    Path((series, ticker)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(fault) = intake(&state, &format!("/trade-api/v2/series/{series}/markets/{ticker}/candlesticks"), &q) {
        return fault;
    }
    super::bars_pace(&state).await;
    let int = |k: &str| q.get(k).and_then(|v| v.parse::<i64>().ok());
    let (Some(start), Some(end), Some(period)) = (int("start_ts"), int("end_ts"), int("period_interval")) else {
        return error(400, "invalid_parameters", "start_ts, end_ts and period_interval are required integers");
    };
    if ![1, 60, 1440].contains(&period) || start > end {
        return error(400, "invalid_parameters", "bad period_interval or range");
    }
    let seconds = period * 60;
    let count = end.div_euclid(seconds) - (start + seconds - 1).div_euclid(seconds) + 1;
    if count > KALSHI_MAX_CANDLES {
        return error(
            400,
            "invalid_parameters",
            &format!("{count} candlesticks requested; at most {KALSHI_MAX_CANDLES}"),
        );
    }
    let s = state.lock().unwrap();
    let Some(candles) = s.kalshi_candles.get(&(series, ticker.clone())) else {
        return error(404, "not_found", "market not found");
    };
    let page: Vec<&Value> =
        candles.iter().filter(|c| (start..=end).contains(&c["end_period_ts"].as_i64().unwrap_or(0))).collect();
    axum::Json(json!({"ticker": ticker, "candlesticks": page})).into_response()
}

/// One page of `items` from the `cursor` (an offset here), and the cursor
/// of the next page, empty after the last.
fn page<'a>(items: &[&'a Value], q: &HashMap<String, String>, cap: usize, default: usize) -> (Vec<&'a Value>, String) {
    let from: usize = q.get("cursor").and_then(|c| c.parse().ok()).unwrap_or(0);
    let mut limit = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(default);
    if cap > 0 {
        limit = limit.min(cap);
    }
    let page: Vec<&Value> = items.iter().skip(from).take(limit).copied().collect();
    let next = if from + limit < items.len() { (from + limit).to_string() } else { String::new() };
    (page, next)
}

fn dollars(cents: i64) -> String {
    format!("{}.{:02}00", cents / 100, cents % 100)
}

/// Checks an order request: its enumerations, a whole positive count, and
/// a price in cents from 1 to 99 that a limit order must have.
fn check_order(request: &Value) -> Result<(), String> {
    let one_of = |key: &str, allowed: &[&str]| match request[key].as_str() {
        Some(v) if allowed.contains(&v) => Ok(v.to_string()),
        other => Err(format!("invalid {key} {other:?}")),
    };
    if request["ticker"].as_str().is_none_or(str::is_empty) {
        return Err("ticker is required".into());
    }
    one_of("side", &["yes", "no"])?;
    one_of("action", &["buy", "sell"])?;
    let kind = one_of("type", &["limit", "market"])?;
    if request["count"].as_i64().is_none_or(|c| c < 1) {
        return Err("count must be a whole number of contracts, at least 1".into());
    }
    let price =
        |key: &str| request.get(key).filter(|v| !v.is_null()).map(|v| v.as_i64().filter(|c| (1..=99).contains(c)));
    match (price("yes_price"), price("no_price")) {
        (Some(None), _) | (_, Some(None)) => Err("prices are whole cents from 1 to 99".into()),
        (None, None) if kind == "limit" => Err("a limit order needs yes_price or no_price".into()),
        (Some(_), Some(_)) => Err("send one of yes_price and no_price".into()),
        _ => Ok(()),
    }
}

/// Every Kalshi portfolio endpoint: checks the RSA-PSS signature over
/// `timestamp + METHOD + path`, then serves by method and path.
pub(super) async fn trade(
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
    let Some(public) = s.kalshi_public_key.clone() else { return error(500, "no_key", "fake has no key") };
    let verified = base64::engine::general_purpose::STANDARD
        .decode(&signature)
        .ok()
        .and_then(|bytes| rsa::pss::Signature::try_from(bytes.as_slice()).ok())
        .is_some_and(|sig| {
            let message = format!("{timestamp}{}{}", method.as_str(), uri.path());
            rsa::pss::VerifyingKey::<sha2::Sha256>::new(public).verify(message.as_bytes(), &sig).is_ok()
        });
    if header("kalshi-access-key").is_empty() || !verified {
        return error(401, "authentication_error", "invalid signature");
    }
    s.requests.push(format!("{} {}?{}", method.as_str(), uri.path(), uri.query().unwrap_or_default()));
    let q = query_pairs(uri.query().unwrap_or_default());
    let cap = s.kalshi_page_cap;
    let path = uri.path().trim_start_matches("/trade-api/v2/portfolio");
    match (method.as_str(), path) {
        ("POST", "/orders") => {
            s.order_posts += 1;
            let fault = s.order_faults.pop_front();
            if let Some(OrderFault::RefuseNamed { status, code, message }) = &fault {
                return error(*status, code, message);
            }
            let request: Value = serde_json::from_slice(&body).unwrap_or_default();
            if let Err(message) = check_order(&request) {
                return error(400, "invalid_parameters", &message);
            }
            let coid = request["client_order_id"].as_str().unwrap_or_default().to_string();
            if s.kalshi_orders.iter().any(|o| o["client_order_id"] == coid.as_str()) {
                return error(409, "order_already_exists", "an order with this client_order_id exists");
            }
            let count = request["count"].as_i64().unwrap_or(0);
            let market = request["type"] == "market" && !s.kalshi_rest_market;
            // A market order's yes_price is its cap, not what it paid.
            let yes_price = request.get("yes_price").and_then(Value::as_i64).unwrap_or(99);
            let cost = if market { count * KALSHI_FILL_CENTS } else { 0 };
            let order = json!({
                "order_id": format!("k-{}", s.kalshi_orders.len() + 1), "client_order_id": coid,
                "ticker": request["ticker"], "side": request["side"], "action": request["action"], "type": request["type"],
                "status": if market { "executed" } else { "resting" }, "count": count,
                "initial_count_fp": format!("{count}.00"),
                "fill_count": if market { count } else { 0 }, "remaining_count": if market { 0 } else { count },
                "fill_count_fp": format!("{}.00", if market { count } else { 0 }),
                "yes_price": yes_price, "yes_price_dollars": dollars(yes_price),
                "taker_fill_cost": cost, "taker_fill_cost_dollars": dollars(cost),
                "maker_fill_cost": 0, "maker_fill_cost_dollars": dollars(0),
                "taker_fees": if market { count } else { 0 }, "maker_fees": 0,
            });
            s.kalshi_orders.push(order.clone());
            if matches!(fault, Some(OrderFault::AcceptThen500)) {
                return error(500, "internal", "internal error");
            }
            (StatusCode::CREATED, axum::Json(json!({"order": order}))).into_response()
        }
        ("GET", "/orders") => {
            let orders: Vec<&Value> = s
                .kalshi_orders
                .iter()
                .filter(|o| q.get("ticker").is_none_or(|t| o["ticker"] == t.as_str()))
                .filter(|o| q.get("status").is_none_or(|st| o["status"] == st.as_str()))
                .collect();
            let (orders, cursor) = page(&orders, &q, cap, 100);
            axum::Json(json!({"orders": orders, "cursor": cursor})).into_response()
        }
        ("GET", "/positions") => {
            let positions: Vec<&Value> = s.kalshi_positions.iter().collect();
            let (positions, cursor) = page(&positions, &q, cap, 100);
            axum::Json(json!({"market_positions": positions, "event_positions": [], "cursor": cursor})).into_response()
        }
        ("GET", "/balance") => axum::Json(json!({"balance": s.kalshi_balance})).into_response(),
        (method, id) if id.starts_with("/orders/") => {
            let id = id.trim_start_matches("/orders/");
            let Some(order) = s.kalshi_orders.iter_mut().find(|o| o["order_id"] == id) else {
                return error(404, "not_found", "order not found");
            };
            if method == "DELETE" {
                if order["status"] != "resting" {
                    return error(400, "order_not_cancelable", "order is not resting");
                }
                order["status"] = json!("canceled");
            }
            axum::Json(json!({"order": order})).into_response()
        }
        _ => error(404, "not_found", "not found"),
    }
}

impl super::FakeVenue {
    /// Adds `n` resting Kalshi orders on `ticker` that are not ours.
    pub fn add_kalshi_resting(&self, ticker: &str, n: usize) {
        let mut s = self.state.lock().unwrap();
        for _ in 0..n {
            let id = format!("k-{}", s.kalshi_orders.len() + 1);
            s.kalshi_orders.push(json!({"order_id": id, "client_order_id": format!("other-{id}"), "ticker": ticker,
                "side": "yes", "action": "buy", "type": "limit", "status": "resting", "count": 1, "fill_count": 0,
                "remaining_count": 1, "yes_price": 10, "taker_fill_cost": 0, "maker_fill_cost": 0}));
        }
    }
}

/// The WebSocket API at `/trade-api/ws/v2`: the opening request must be
/// signed as a REST request is (over `timestamp + "GET" + path`); the first
/// command must subscribe to `fill`; each fill of an order then follows as
/// `{"type": "fill", "msg": {...}}`.
pub(super) async fn websocket(
    State(state): State<Shared>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    use base64::Engine as _;
    use rsa::signature::Verifier as _;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let (timestamp, signature) = (header("kalshi-access-timestamp"), header("kalshi-access-signature"));
    let Some(public) = state.lock().unwrap().kalshi_public_key.clone() else {
        return error(500, "no_key", "fake has no key");
    };
    let verified = base64::engine::general_purpose::STANDARD
        .decode(&signature)
        .ok()
        .and_then(|bytes| rsa::pss::Signature::try_from(bytes.as_slice()).ok())
        .is_some_and(|sig| {
            let message = format!("{timestamp}GET{}", uri.path());
            rsa::pss::VerifyingKey::<sha2::Sha256>::new(public).verify(message.as_bytes(), &sig).is_ok()
        });
    if header("kalshi-access-key").is_empty() || !verified {
        return error(401, "authentication_error", "invalid signature");
    }
    upgrade.on_upgrade(move |socket| fills(state, socket))
}

async fn fills(state: Shared, mut socket: axum::extract::ws::WebSocket) {
    use axum::extract::ws::Message;
    let Ok(Some(Ok(Message::Text(text)))) =
        tokio::time::timeout(std::time::Duration::from_secs(5), socket.recv()).await
    else {
        return;
    };
    let command: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
    let channels: Vec<&str> = command["params"]["channels"]
        .as_array()
        .map(|c| c.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let channel = match channels.as_slice() {
        ["fill"] => "fill",
        ["trade"] => "trade",
        _ => "",
    };
    if command["cmd"] != "subscribe" || channel.is_empty() {
        let refusal = json!({"id": command["id"], "type": "error", "msg": {"code": 8, "msg": "Unknown channel name"}});
        let _ = socket.send(Message::Text(refusal.to_string().into())).await;
        return;
    }
    // The trade channel takes the markets to hear; without any, every market.
    let tickers: Vec<String> = command["params"]["market_tickers"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let subscribed = json!({"id": command["id"], "type": "subscribed", "msg": {"channel": channel, "sid": 1}});
    let _ = socket.send(Message::Text(subscribed.to_string().into())).await;
    let (tx, updates) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    {
        let mut s = state.lock().unwrap();
        if channel == "fill" {
            s.fill_stream_connections += 1;
            s.fill_subscribers.push(tx);
        } else {
            s.trade_stream_connections += 1;
            s.trade_subscribers.push((tickers, tx));
        }
    }
    super::forward(socket, updates, super::Frames::Text).await;
}

impl super::FakeVenue {
    /// A trade in Kalshi market `ticker` of `series` at `cents` a YES
    /// contract, at `ts` (seconds): it goes into that minute's REST candle
    /// and out on the trade channel to every client hearing the market.
    pub fn publish_kalshi_trade(&self, series: &str, ticker: &str, cents: i64, count: i64, ts: i64) {
        let mut s = self.state.lock().unwrap();
        let end = (ts.div_euclid(60) + 1) * 60;
        let candles = s.kalshi_candles.entry((series.to_string(), ticker.to_string())).or_default();
        match candles.iter_mut().find(|c| c["end_period_ts"] == end) {
            Some(candle) => {
                let price = &mut candle["price"];
                price["high"] = json!(price["high"].as_i64().unwrap_or(cents).max(cents));
                price["low"] = json!(price["low"].as_i64().unwrap_or(cents).min(cents));
                price["close"] = json!(cents);
                candle["volume"] = json!(candle["volume"].as_i64().unwrap_or(0) + count);
            }
            None => {
                candles.push(json!({"end_period_ts": end, "volume": count,
                    "price": {"open": cents, "high": cents, "low": cents, "close": cents}}));
                candles.sort_by_key(|c| c["end_period_ts"].as_i64());
            }
        }
        let trade = json!({"type": "trade", "sid": 1, "msg": {"trade_id": format!("t-{ts}-{cents}"),
            "market_ticker": ticker, "yes_price": cents, "yes_price_dollars": dollars(cents), "no_price": 100 - cents,
            "count": count, "count_fp": format!("{count}.00"), "taker_side": "yes", "ts": ts}});
        let bytes = trade.to_string().into_bytes();
        s.trade_subscribers.retain(|(tickers, tx)| {
            !(tickers.is_empty() || tickers.iter().any(|t| t == ticker)) || tx.send(bytes.clone()).is_ok()
        });
    }

    /// Closes every trade stream, as a venue restarting would.
    pub fn drop_kalshi_trade_streams(&self) {
        self.state.lock().unwrap().trade_subscribers.clear();
    }
}

impl super::FakeVenue {
    /// Fills every resting Kalshi order whole at the fake's price now, and
    /// sends each fill on the WebSocket.
    pub fn fill_kalshi_resting(&self) {
        let mut s = self.state.lock().unwrap();
        let mut messages = Vec::new();
        for order in s.kalshi_orders.iter_mut().filter(|o| o["status"] == "resting") {
            let count = order["count"].as_i64().unwrap_or(0);
            let cost = count * KALSHI_FILL_CENTS;
            order["status"] = json!("executed");
            order["fill_count"] = json!(count);
            order["fill_count_fp"] = json!(format!("{count}.00"));
            order["remaining_count"] = json!(0);
            order["taker_fill_cost"] = json!(cost);
            order["taker_fill_cost_dollars"] = json!(dollars(cost));
            order["taker_fees"] = json!(count);
            let fill = json!({"type": "fill", "sid": 1, "msg": {"trade_id": format!("t-{}", order["order_id"]),
                "order_id": order["order_id"], "market_ticker": order["ticker"], "is_taker": true,
                "side": order["side"], "yes_price": KALSHI_FILL_CENTS, "count": count, "action": order["action"],
                "ts": 1_700_000_000}});
            messages.push(fill.to_string().into_bytes());
        }
        for message in messages {
            s.fill_subscribers.retain(|tx| tx.send(message.clone()).is_ok());
        }
    }
}
