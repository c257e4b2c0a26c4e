//! Fake Binance spot (`binance-spot.yaml`): klines, exchange filters that
//! are enforced on orders as Binance does, its own clock against which each
//! signed request's `timestamp` and `recvWindow` are checked, and the HMAC
//! signature over the query string.

use std::collections::HashMap;
use std::str::FromStr;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::{OrderFault, Shared, intake, now_ms, query_pairs};

/// The secret the fake Binance checks signatures with.
pub const BINANCE_SECRET: &str = "fake-binance-secret";
/// Price at which the fake Binance fills market orders, and its average price.
pub const BINANCE_FILL_PRICE: &str = "100.5";

/// Filters shaped like a real symbol's: `MARKET_LOT_SIZE` without a step, a
/// `NOTIONAL` minimum of 1 that applies to market orders too.
pub fn binance_default_filters() -> Vec<Value> {
    vec![
        json!({"filterType": "PRICE_FILTER", "minPrice": "0.01000000", "maxPrice": "1000000.00000000", "tickSize": "0.01000000"}),
        json!({"filterType": "LOT_SIZE", "minQty": "0.00100000", "maxQty": "9000.00000000", "stepSize": "0.00100000"}),
        json!({"filterType": "MARKET_LOT_SIZE", "minQty": "0.00000000", "maxQty": "100.00000000", "stepSize": "0.00000000"}),
        json!({"filterType": "NOTIONAL", "minNotional": "1.00000000", "applyMinToMarket": true, "maxNotional": "9000000.00000000", "applyMaxToMarket": false, "avgPriceMins": 5}),
    ]
}

/// Adds `by` to the free balance of `asset` (quote asset: USDT).
fn move_balance(balances: &mut Vec<(String, String)>, asset: &str, by: Decimal) {
    match balances.iter_mut().find(|(a, _)| a == asset) {
        Some((_, free)) => *free = (free.parse::<Decimal>().unwrap_or_default() + by).to_string(),
        None => balances.push((asset.to_string(), by.to_string())),
    }
}

fn error(status: u16, code: i64, msg: &str) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(json!({"code": code, "msg": msg}))).into_response()
}

pub(super) async fn klines(State(state): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Some(fault) = intake(&state, "/api/v3/klines", &q) {
        return fault;
    }
    super::bars_pace(&state).await;
    let s = state.lock().unwrap();
    let Some(rows) = q.get("symbol").and_then(|sym| s.binance_klines.get(sym)) else {
        return error(400, -1121, "Invalid symbol.");
    };
    let start: i64 = q.get("startTime").and_then(|t| t.parse().ok()).unwrap_or(0);
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(500);
    if !(1..=1000).contains(&limit) {
        return error(400, -1130, "Invalid data sent for a parameter.");
    }
    // Both bounds are inclusive and apply to open times.
    let end: i64 = q.get("endTime").and_then(|t| t.parse().ok()).unwrap_or(i64::MAX);
    let page: Vec<&Value> =
        rows.iter().filter(|r| (start..=end).contains(&r[0].as_i64().unwrap_or(0))).take(limit).collect();
    axum::Json(json!(page)).into_response()
}

pub(super) async fn exchange_info(State(state): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut s = state.lock().unwrap();
    s.requests.push("/api/v3/exchangeInfo?".into());
    let symbol = q.get("symbol").cloned().unwrap_or_default();
    axum::Json(json!({"timezone": "UTC", "serverTime": now_ms() + s.binance_clock_skew_ms, "rateLimits": [],
        "exchangeFilters": [], "symbols": [{"symbol": symbol, "status": "TRADING", "filters": s.binance_filters}]}))
    .into_response()
}

pub(super) async fn time(State(state): State<Shared>) -> Response {
    let mut s = state.lock().unwrap();
    s.requests.push("/api/v3/time?".into());
    axum::Json(json!({"serverTime": now_ms() + s.binance_clock_skew_ms + s.binance_time_error_ms})).into_response()
}

pub(super) async fn avg_price(State(state): State<Shared>) -> Response {
    let mut s = state.lock().unwrap();
    s.requests.push("/api/v3/avgPrice?".into());
    axum::Json(json!({"mins": 5, "price": BINANCE_FILL_PRICE, "closeTime": now_ms()})).into_response()
}

/// Checks an order against the symbol's filters as Binance documents them;
/// `Err` names the filter that failed. `PRICE_FILTER` applies to the price
/// and the stop price alike. `market` is for orders that trade as market
/// orders (`MARKET`, and `STOP_LOSS` once triggered); a `STOP_LOSS` is
/// valued at its stop price, a `MARKET` order at the average price.
fn check_filters(
    filters: &[Value],
    market: bool,
    qty: Decimal,
    price: Option<Decimal>,
    stop: Option<Decimal>,
) -> Result<(), String> {
    let d = |f: &Value, k: &str| Decimal::from_str(f[k].as_str().unwrap_or("0")).unwrap();
    let lot = |f: &Value| {
        let (min, max, step) = (d(f, "minQty"), d(f, "maxQty"), d(f, "stepSize"));
        qty >= min && (max.is_zero() || qty <= max) && (step.is_zero() || ((qty - min) % step).is_zero())
    };
    for f in filters {
        let kind = f["filterType"].as_str().unwrap_or("");
        let ok = match kind {
            "PRICE_FILTER" => [price, stop].into_iter().flatten().all(|p| {
                let (min, max, tick) = (d(f, "minPrice"), d(f, "maxPrice"), d(f, "tickSize"));
                (min.is_zero() || p >= min) && (max.is_zero() || p <= max) && (tick.is_zero() || (p % tick).is_zero())
            }),
            "LOT_SIZE" => lot(f),
            "MARKET_LOT_SIZE" => !market || lot(f),
            "MIN_NOTIONAL" | "NOTIONAL" => {
                let notional = qty * price.or(stop).unwrap_or_else(|| BINANCE_FILL_PRICE.parse().unwrap());
                let (apply_min, apply_max) = if kind == "MIN_NOTIONAL" {
                    (f["applyToMarket"].as_bool().unwrap_or(true), false)
                } else {
                    (f["applyMinToMarket"].as_bool().unwrap_or(true), f["applyMaxToMarket"].as_bool().unwrap_or(false))
                };
                let max = if kind == "NOTIONAL" { d(f, "maxNotional") } else { Decimal::ZERO };
                ((market && !apply_min) || notional >= d(f, "minNotional"))
                    && ((market && !apply_max) || max.is_zero() || notional <= max)
            }
            _ => true,
        };
        if !ok {
            return Err(format!("Filter failure: {kind}"));
        }
    }
    Ok(())
}

/// A spot fill of `qty` at `price` moves the base asset and the quote asset.
pub(super) fn fill_balances(s: &mut super::VenueState, order: &Value, qty: Decimal, price: Decimal) {
    let symbol = order["symbol"].as_str().unwrap_or_default().to_string();
    let base = symbol.strip_suffix("USDT").unwrap_or(&symbol).to_string();
    let signed = if order["side"] == "BUY" { qty } else { -qty };
    move_balance(&mut s.binance_balances, &base, signed);
    move_balance(&mut s.binance_balances, "USDT", -signed * price);
}

/// One handler for every signed endpoint: checks the key, the HMAC over the
/// query string and the timestamp against this fake's clock, then serves by
/// method and path.
pub(super) async fn signed(
    State(state): State<Shared>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let query = uri.query().unwrap_or_default().to_string();
    let Some((payload, signature)) = query.rsplit_once("&signature=") else {
        return error(400, -1102, "Mandatory parameter 'signature' was not sent.");
    };
    if headers.get("x-mbx-apikey").is_none() {
        return error(401, -2014, "API-key format invalid.");
    }
    if stratbox::broker::binance_signature(BINANCE_SECRET, payload) != signature {
        return error(401, -1022, "Signature for this request is not valid.");
    }
    let params = query_pairs(payload);
    let param = |k: &str| params.get(k).cloned().unwrap_or_default();
    let mut s = state.lock().unwrap();
    s.requests.push(format!("{} {}", method.as_str(), uri.path()));
    let Ok(timestamp) = param("timestamp").parse::<i64>() else {
        return error(400, -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.");
    };
    let window: i64 = match params.get("recvWindow").map(|w| w.parse::<i64>()) {
        None => 5000,
        Some(Ok(w)) if (0..=60_000).contains(&w) => w,
        Some(_) => return error(400, -1131, "recvWindow must be less than 60000"),
    };
    let server = now_ms() + s.binance_clock_skew_ms;
    if !(timestamp < server + 1000 && server - timestamp <= window) {
        return error(400, -1021, "Timestamp for this request is outside of the recvWindow.");
    }
    match (method.as_str(), uri.path()) {
        ("POST", "/api/v3/order") => {
            s.order_posts += 1;
            let fault = s.order_faults.pop_front();
            if let Some(OrderFault::Status { code, .. }) = fault {
                return error(code, -1000, "injected");
            }
            if !["BUY", "SELL"].contains(&param("side").as_str()) {
                return error(400, -1117, "Invalid side.");
            }
            let kind = param("type");
            // What each type takes: a limit price (with `timeInForce`) and a stop price.
            let (limited, stopped) = match kind.as_str() {
                "MARKET" => (false, false),
                "LIMIT" => (true, false),
                "STOP_LOSS" => (false, true),
                "STOP_LOSS_LIMIT" => (true, true),
                _ => return error(400, -1116, "Invalid orderType."),
            };
            let Ok(qty) = param("quantity").parse::<Decimal>() else {
                return error(400, -1100, "Illegal characters found in parameter 'quantity'.");
            };
            match params.get("timeInForce").map(String::as_str) {
                None if limited => return error(400, -1102, "Mandatory parameter 'timeInForce' was not sent."),
                Some(_) if !limited => return error(400, -1106, "Parameter 'timeInForce' sent when not required."),
                Some(tif) if !["GTC", "IOC", "FOK"].contains(&tif) => return error(400, -1115, "Invalid timeInForce."),
                _ => {}
            }
            if params.get("newOrderRespType").is_some_and(|t| !["ACK", "RESULT", "FULL"].contains(&t.as_str())) {
                return error(400, -1100, "Illegal characters found in parameter 'newOrderRespType'.");
            }
            let price_param = |name: &'static str, wanted: bool| match params.get(name).map(|p| p.parse::<Decimal>()) {
                None if !wanted => Ok(None),
                Some(Ok(p)) if wanted && p > Decimal::ZERO => Ok(Some(p)),
                _ => Err(name),
            };
            let (price, stop) = match (price_param("price", limited), price_param("stopPrice", stopped)) {
                (Ok(price), Ok(stop)) => (price, stop),
                (Err(name), _) | (_, Err(name)) => {
                    return error(400, -1102, &format!("Mandatory parameter '{name}' was not sent or not allowed."));
                }
            };
            // Without a limit price an order trades as a market order.
            if let Err(reason) = check_filters(&s.binance_filters, !limited, qty, price, stop) {
                return error(400, -1013, &reason);
            }
            // Stops wait for their trigger; only a market order fills at once.
            let market = kind == "MARKET";
            let coid = param("newClientOrderId");
            if s.binance_orders.iter().any(|o| o["clientOrderId"] == coid.as_str()) {
                return error(400, -2010, "Duplicate order sent.");
            }
            let fill: Decimal = BINANCE_FILL_PRICE.parse().unwrap();
            let order = json!({
                "symbol": param("symbol"), "orderId": s.binance_orders.len() + 1, "clientOrderId": coid,
                "price": params.get("price").cloned().unwrap_or_else(|| "0.00000000".into()),
                "stopPrice": params.get("stopPrice").cloned().unwrap_or_else(|| "0.00000000".into()),
                "origQty": qty.to_string(),
                "executedQty": if market { qty.to_string() } else { "0".into() },
                "cummulativeQuoteQty": if market { (qty * fill).to_string() } else { "0".into() },
                "status": if market { "FILLED" } else { "NEW" },
                "type": param("type"), "side": param("side"),
            });
            s.binance_orders.push(order.clone());
            if market {
                fill_balances(&mut s, &order, qty, fill);
            }
            super::binance_stream::report(&mut s, &order);
            if matches!(fault, Some(OrderFault::AcceptThen500)) {
                return error(500, -1000, "An unknown error occurred while processing the request.");
            }
            axum::Json(order).into_response()
        }
        ("GET", "/api/v3/order") => {
            let (coid, id) = (param("origClientOrderId"), param("orderId").parse::<i64>().ok());
            let found = s.binance_orders.iter().find(|o| {
                o["symbol"] == param("symbol").as_str()
                    && (o["clientOrderId"] == coid.as_str() || id.is_some_and(|id| o["orderId"] == id))
            });
            match found {
                Some(order) => axum::Json(order.clone()).into_response(),
                None => error(400, -2013, "Order does not exist."),
            }
        }
        ("DELETE", "/api/v3/order") => {
            let id: i64 = param("orderId").parse().unwrap_or(-1);
            match s.binance_orders.iter_mut().find(|o| o["orderId"] == id) {
                Some(order) if order["status"] == "NEW" => {
                    order["status"] = json!("CANCELED");
                    let order = order.clone();
                    super::binance_stream::report(&mut s, &order);
                    axum::Json(order).into_response()
                }
                _ => error(400, -2011, "Unknown order sent."),
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
        _ => error(404, -1000, "not found"),
    }
}
