//! Fake Interactive Brokers Client Portal Web API gateway (v1, base path
//! `/v1/api`), written from IBKR's published documentation (the Client
//! Portal Web API reference and the IBKR Campus Web API pages), not from any
//! client. It holds requests to those docs: a request the gateway would
//! refuse is refused here too, and answers have the documented shapes and
//! JSON types. Where the docs are loose, a comment says which form was picked.
//!
//! Served over HTTPS with a self-signed certificate (as the real gateway's),
//! or plain HTTP. Faults from `mod.rs` can be queued.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Value, json};

use super::{Fault, OrderFault, query_pairs};

mod market;
mod orders;

use self::market::{history, search};
use self::orders::{confirm, live_order, live_orders, order_status, place, position, summary, trades};

/// The one (paper) account the fake's user may trade.
pub const IBKR_ACCOUNT: &str = "DU1234567";
const BASE: &str = "/v1/api";
/// "This endpoint provides a maximum of 1000 data points."
const MAX_POINTS: usize = 1000;
/// "One page contains a maximum of 100 positions."
const PAGE_SIZE: usize = 100;
const SERVER_INFO: (&str, &str) = ("JifN19053", "Build 10.25.0p, Dec 5, 2023 5:48:12 PM");

struct Order {
    id: i64,
    coid: Option<String>,
    conid: i64,
    symbol: String,
    side: String,
    kind: String,
    qty: Decimal,
    price: Option<Decimal>,
    aux: Option<Decimal>,
    tif: String,
    status: &'static str,
    filled: Decimal,
    avg: Decimal,
    placed_ms: i64,
    updated_ms: i64,
    /// The session in which the order last changed; a finished order is
    /// only known to the session it finished in ("If an order has been
    /// cancelled or filled prior to the active session ... 503").
    session: u64,
}

impl Order {
    fn working(&self) -> bool {
        matches!(self.status, "Submitted" | "PreSubmitted")
    }
}

/// One execution of an order.
struct Execution {
    id: u64,
    coid: Option<String>,
    conid: i64,
    symbol: String,
    side: String,
    size: Decimal,
    price: Decimal,
    time_ms: i64,
}

/// An order held behind its confirmation questions.
struct Pending {
    reply_id: String,
    order: Order,
    questions: VecDeque<(String, String)>,
}

struct Position {
    symbol: String,
    conid: i64,
    qty: Decimal,
    avg: Decimal,
    last: Decimal,
}

#[derive(Default)]
struct Gateway {
    authenticated: bool,
    session: u64,
    /// Whether `/iserver/accounts`, `/portfolio/accounts` and the first
    /// `/iserver/account/orders` were called in this session.
    accounts_read: bool,
    portfolio_read: bool,
    orders_primed: bool,
    contracts: Vec<(String, i64)>,
    /// Bars per conid by time (ms): o, h, l, c, v.
    bars: HashMap<i64, BTreeMap<i64, [f64; 5]>>,
    orders: Vec<Order>,
    next_id: i64,
    questions: VecDeque<(String, String)>,
    pending: Option<Pending>,
    replies: Vec<(String, bool)>,
    questions_asked: u64,
    positions: Vec<Position>,
    /// The portfolio's cached positions, as served until invalidated:
    /// "the portfolio positions are cached"; fills do not refresh them.
    positions_served: Option<Vec<Value>>,
    /// Every execution, as `/iserver/account/trades` reports them.
    executions: Vec<Execution>,
    /// "/iserver/account/orders: 1 req/5 secs"; faster reads are refused 429.
    live_orders_pace: std::time::Duration,
    last_live_read: Option<std::time::Instant>,
    cash: Decimal,
    faults: VecDeque<Fault>,
    order_faults: VecDeque<OrderFault>,
    requests: Vec<String>,
    tickles: usize,
    searches: usize,
    order_posts: usize,
}

type Shared = Arc<Mutex<Gateway>>;

pub struct FakeGateway {
    /// The base URL, `/v1/api` included.
    pub url: String,
    /// The self-signed certificate in PEM (empty without TLS).
    pub ca_pem: String,
    state: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeGateway {
    pub async fn start(tls: bool) -> Self {
        let state: Shared = Arc::new(Mutex::new(Gateway {
            authenticated: true,
            session: 1,
            next_id: 1_700_000_001,
            cash: Decimal::from(100_000),
            live_orders_pace: std::time::Duration::from_secs(5),
            ..Gateway::default()
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let addr = listener.local_addr().unwrap();
        if !tls {
            let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            return Self { url: format!("http://{addr}{BASE}"), ca_pem: String::new(), state, task };
        }
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let certified = rcgen::generate_simple_self_signed(names).expect("self-signed certificate");
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key.into())
            .expect("TLS certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let task = tokio::spawn(async move {
            // Connections live in the set, so aborting this task ends them too.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                while connections.try_join_next().is_some() {}
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let (acceptor, service) =
                    (acceptor.clone(), hyper_util::service::TowerToHyperService::new(app.clone()));
                connections.spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else { return };
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        Self { url: format!("https://{addr}{BASE}"), ca_pem: certified.cert.pem(), state, task }
    }

    fn gw(&self) -> std::sync::MutexGuard<'_, Gateway> {
        self.state.lock().unwrap()
    }

    /// Adds a stock listed on NASDAQ.
    pub fn add_contract(&self, symbol: &str, conid: i64) {
        self.gw().contracts.push((symbol.to_string(), conid));
    }

    #[allow(clippy::too_many_arguments)] // The signature the tests were written against.
    pub fn publish_bar(&self, conid: i64, t_ms: i64, o: &str, h: &str, l: &str, c: &str, v: &str) {
        let n = |s: &str| s.parse::<f64>().expect("bar values are numbers");
        self.gw().bars.entry(conid).or_default().insert(t_ms, [n(o), n(h), n(l), n(c), n(v)]);
    }

    /// `false`: the session is lost. `true` after `false`: logged in again,
    /// a new session (accounts must be read again, the orders snapshot
    /// quirk comes back, held orders are gone).
    pub fn set_authenticated(&self, authenticated: bool) {
        let mut g = self.gw();
        if authenticated && !g.authenticated {
            g.session += 1;
            (g.accounts_read, g.portfolio_read, g.orders_primed) = (false, false, false);
        }
        g.authenticated = authenticated;
        g.pending = None;
    }

    /// Queues a confirmation question for the next order placement; several
    /// calls make several questions in a row.
    pub fn ask_next_order(&self, message_id: &str, text: &str) {
        self.gw().questions.push_back((message_id.to_string(), text.to_string()));
    }

    /// Fills every working order whole at `price`.
    pub fn fill_open_orders(&self, price: &str) {
        self.fill(None, price);
    }

    /// Fills `qty` (or what remains, if less) of every working order.
    pub fn fill_part_of_open_orders(&self, qty: &str, price: &str) {
        self.fill(Some(qty.parse().expect("quantity")), price);
    }

    fn fill(&self, qty: Option<Decimal>, price: &str) {
        let price: Decimal = price.parse().expect("price");
        let mut guard = self.gw();
        let g = &mut *guard;
        for o in g.orders.iter_mut().filter(|o| o.working()) {
            let q = qty.unwrap_or(o.qty).min(o.qty - o.filled);
            if q <= Decimal::ZERO {
                continue;
            }
            let id = g.executions.len() as u64 + 1;
            g.executions.push(Execution {
                id,
                coid: o.coid.clone(),
                conid: o.conid,
                symbol: o.symbol.clone(),
                side: o.side.clone(),
                size: q,
                price,
                time_ms: now_ms(),
            });
            o.avg = (o.avg * o.filled + price * q) / (o.filled + q);
            o.filled += q;
            o.status = if o.filled == o.qty { "Filled" } else { "Submitted" };
            (o.updated_ms, o.session) = (now_ms(), g.session);
            let signed = if o.side == "BUY" { q } else { -q };
            g.cash -= signed * price;
            let index = match g.positions.iter().position(|p| p.conid == o.conid) {
                Some(index) => index,
                None => {
                    let (symbol, conid) = (o.symbol.clone(), o.conid);
                    g.positions.push(Position { symbol, conid, qty: Decimal::ZERO, avg: price, last: price });
                    g.positions.len() - 1
                }
            };
            let p = &mut g.positions[index];
            let after = p.qty + signed;
            if p.qty.is_zero() || (after.is_sign_negative() != p.qty.is_sign_negative() && !after.is_zero()) {
                p.avg = price;
            } else if after.abs() > p.qty.abs() {
                p.avg = (p.avg * p.qty + price * signed) / after;
            }
            (p.qty, p.last) = (after, price);
        }
        g.positions.retain(|p| !p.qty.is_zero());
    }

    pub fn fail_next(&self, fault: Fault) {
        self.gw().faults.push_back(fault);
    }

    /// Faults the next placement. They come before any queued question,
    /// which then waits for the placement after.
    pub fn fail_next_order(&self, fault: OrderFault) {
        self.gw().order_faults.push_back(fault);
    }

    /// How often the live orders may be read (IBKR's 5 s by default).
    pub fn set_live_orders_pace(&self, pace: std::time::Duration) {
        self.gw().live_orders_pace = pace;
    }

    /// A new day at the gateway: orders that finished are forgotten by the
    /// live orders and the order status, as after a session reset.
    pub fn new_session(&self) {
        self.set_authenticated(false);
        self.set_authenticated(true);
    }

    pub fn set_cash(&self, usd: &str) {
        self.gw().cash = usd.parse().expect("cash");
    }

    pub fn set_position(&self, symbol: &str, conid: i64, qty: &str, avg_price: &str) {
        let (qty, avg): (Decimal, Decimal) = (qty.parse().expect("qty"), avg_price.parse().expect("price"));
        let mut g = self.gw();
        g.positions.retain(|p| p.conid != conid);
        if !qty.is_zero() {
            g.positions.push(Position { symbol: symbol.to_string(), conid, qty, avg, last: avg });
        }
    }

    /// Every request as `METHOD /v1/api/path?sorted&query` (no `?` without a query).
    pub fn requests(&self) -> Vec<String> {
        self.gw().requests.clone()
    }

    /// Requests of `method` whose path starts with `path_prefix`, given
    /// with or without the `/v1/api` base.
    pub fn requests_to(&self, method: &str, path_prefix: &str) -> usize {
        let prefix = path_prefix.strip_prefix(BASE).unwrap_or(path_prefix);
        let matches = |r: &&String| {
            r.split_once(' ').is_some_and(|(m, p)| m == method && p.strip_prefix(BASE).unwrap_or(p).starts_with(prefix))
        };
        self.gw().requests.iter().filter(matches).count()
    }

    pub fn order_posts(&self) -> usize {
        self.gw().order_posts
    }

    /// The fake's orders as `/iserver/account/orders` serves them.
    pub fn live_orders(&self) -> Vec<Value> {
        let g = self.gw();
        g.orders.iter().map(live_order).collect()
    }

    pub fn tickles(&self) -> usize {
        self.gw().tickles
    }

    pub fn searches(&self) -> usize {
        self.gw().searches
    }

    pub fn replies(&self) -> Vec<(String, bool)> {
        self.gw().replies.clone()
    }
}

fn json(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), axum::Json(body)).into_response()
}

/// The gateway's error body. Its docs show `{"error": "..."}`; refusals
/// of malformed requests also carry `statusCode`.
fn error(status: u16, message: &str) -> Response {
    json(status, json!({"error": message, "statusCode": status}))
}

/// "an order ... that can not be completed ... 200 OK response along with an error message".
fn reject(message: &str) -> Response {
    json(200, json!({"error": message}))
}

fn injected(code: u16, retry_after: Option<u64>) -> Response {
    let mut response = error(code, "injected");
    if let Some(seconds) = retry_after {
        response.headers_mut().insert("retry-after", seconds.into());
    }
    response
}

fn num(d: Decimal) -> Value {
    json!(d.to_f64().unwrap_or(0.0))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as i64
}

/// UTC time as `YYYYMMDD-HH:mm:ss`, or `YYMMDDHHmmss` when `compact`.
fn utc(ms: i64, compact: bool) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let (y, mo, d, h, mi, s) = (t.year(), t.month() as u8, t.day(), t.hour(), t.minute(), t.second());
    if compact {
        format!("{:02}{mo:02}{d:02}{h:02}{mi:02}{s:02}", y % 100)
    } else {
        format!("{y:04}{mo:02}{d:02}-{h:02}:{mi:02}:{s:02}")
    }
}

fn parse_utc(text: &str) -> Option<i64> {
    let (date, clock) = text.split_once('-')?;
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse::<u32>().ok()).flatten();
    let hms: Vec<u32> = clock.split(':').map(digits).collect::<Option<_>>()?;
    let ([h, mi, s], 8) = (hms.as_slice(), date.len()) else { return None };
    let ymd = digits(date)?;
    let month = time::Month::try_from((ymd / 100 % 100) as u8).ok()?;
    let date = time::Date::from_calendar_date((ymd / 10000) as i32, month, (ymd % 100) as u8).ok()?;
    let clock = time::Time::from_hms(u8::try_from(*h).ok()?, u8::try_from(*mi).ok()?, u8::try_from(*s).ok()?).ok()?;
    Some(time::PrimitiveDateTime::new(date, clock).assume_utc().unix_timestamp() * 1000)
}

/// Every request comes here: recorded, maybe faulted, then routed by path.
async fn handle(State(state): State<Shared>, method: Method, uri: Uri, body: Bytes) -> Response {
    let query = query_pairs(uri.query().unwrap_or_default());
    let path = uri.path();
    let reply = {
        let mut g = state.lock().unwrap();
        let mut pairs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.sort();
        let query_text = if pairs.is_empty() { String::new() } else { format!("?{}", pairs.join("&")) };
        g.requests.push(format!("{method} {path}{query_text}"));
        // Tickles, searches and placements are counted as received, whatever comes of them.
        let route = path.strip_prefix(BASE).unwrap_or(path);
        if route == "/tickle" {
            g.tickles += 1;
        } else if route == "/iserver/secdef/search" {
            g.searches += 1;
        } else if method == Method::POST && route.starts_with("/iserver/account/") && route.ends_with("/orders") {
            g.order_posts += usize::from(route.matches('/').count() == 4);
        }
        match g.faults.pop_front() {
            Some(Fault::Status { code, retry_after }) => return injected(code, retry_after),
            Some(Fault::Malformed) => return (StatusCode::OK, "{\"orders\": [not json").into_response(),
            None => {}
        }
        let Some(route) = path.strip_prefix(BASE) else { return error(404, "Not Found") };
        let segments: Vec<&str> = route.trim_start_matches('/').split('/').collect();
        dispatch(&mut g, &method, &segments, &query, &body)
    };
    match reply {
        Reply::Done(response) => response,
        Reply::Accepted(_, OrderFault::AcceptThenDrop) => {
            let broken = futures_util::stream::iter([Err::<Bytes, _>(std::io::Error::other("connection dropped"))]);
            (StatusCode::OK, axum::body::Body::from_stream(broken)).into_response()
        }
        Reply::Accepted(answer, OrderFault::AcceptThenHang(delay)) => {
            tokio::time::sleep(delay).await;
            json(200, answer)
        }
        Reply::Accepted(_, _) => error(500, "Internal Server Error"),
    }
}

enum Reply {
    Done(Response),
    /// The order was taken; the answer is spoiled by the fault.
    Accepted(Value, OrderFault),
}

impl From<Response> for Reply {
    fn from(response: Response) -> Self {
        Reply::Done(response)
    }
}

fn dispatch(g: &mut Gateway, method: &Method, segs: &[&str], q: &HashMap<String, String>, body: &[u8]) -> Reply {
    let iserver = segs.first() == Some(&"iserver");
    let status_or_reauth = matches!(segs, ["iserver", "auth", "status"] | ["iserver", "reauthenticate"]);
    if iserver && !status_or_reauth && !g.authenticated {
        // The gateway answers 401 with no body when there is no brokerage session.
        return StatusCode::UNAUTHORIZED.into_response().into();
    }
    // "Submitting other orders or other requests will cancel the order and
    // attempts to acknowledge the reply will result in a 503 error."
    if iserver && !matches!(segs, ["iserver", "reply", _] | ["iserver", "auth", "status"]) {
        g.pending = None;
    }
    match (method.as_str(), segs) {
        ("GET" | "POST", ["iserver", "auth", "status"]) => json(200, auth_status(g)),
        // The reference gives POST; the pacing table lists GET /tickle, so both are served.
        ("GET" | "POST", ["tickle"]) => json(
            200,
            json!({"session": format!("{:032x}", g.session), "ssoExpires": 460_311, "collission": false,
                "userId": 123_456_789, "hmds": {"error": "no bridge"}, "iserver": {"authStatus": auth_status(g)}}),
        ),
        ("POST", ["iserver", "reauthenticate"]) => json(200, json!({"message": "triggered"})),
        ("GET", ["iserver", "accounts"]) => {
            g.accounts_read = true;
            json(200, json!({"accounts": [IBKR_ACCOUNT],
                "acctProps": {IBKR_ACCOUNT: {"hasChildAccounts": false, "supportsCashQty": true, "noFXConv": false,
                    "isProp": false, "supportsFractions": false, "allowCustomerTime": false}},
                "aliases": {IBKR_ACCOUNT: IBKR_ACCOUNT}, "allowFeatures": {"allowedAssetTypes": "STK"},
                "chartPeriods": {"STK": ["*"]}, "groups": [], "profiles": [], "selectedAccount": IBKR_ACCOUNT,
                "serverInfo": {"serverName": SERVER_INFO.0, "serverVersion": SERVER_INFO.1},
                "sessionId": format!("{:x}.{:08x}", g.session, g.session), "isFT": false, "isPaper": true}))
        }
        ("GET", ["iserver", "secdef", "search"]) => {
            search(g, q.get("symbol").map(String::as_str), q.get("secType").map(String::as_str))
        }
        ("POST", ["iserver", "secdef", "search"]) => {
            let request: Value = serde_json::from_slice(body).unwrap_or_default();
            search(g, request.get("symbol").and_then(Value::as_str), request.get("secType").and_then(Value::as_str))
        }
        ("GET", ["iserver", "marketdata", "history"]) => history(g, q),
        ("POST", ["iserver", "account", account, "orders"]) => return place(g, account, body),
        ("POST", ["iserver", "reply", reply_id]) => return confirm(g, reply_id, body),
        ("GET", ["iserver", "account", "trades"]) => {
            if let Some(refusal) = accounts_first(g.accounts_read, "/iserver/accounts") {
                return refusal.into();
            }
            trades(g, q)
        }
        ("GET", ["iserver", "account", "orders"]) => {
            let now = std::time::Instant::now();
            if g.last_live_read.is_some_and(|last| now.duration_since(last) < g.live_orders_pace) {
                return error(429, "Too Many Requests").into();
            }
            g.last_live_read = Some(now);
            if let Some(refusal) = accounts_first(g.accounts_read, "/iserver/accounts") {
                return refusal.into();
            }
            live_orders(g, q)
        }
        ("GET", ["iserver", "account", "order", "status", id]) => {
            let Ok(id) = id.parse::<i64>() else { return error(400, "orderId must be a number").into() };
            match g.orders.iter().find(|o| o.id == id && (o.working() || o.session == g.session)) {
                Some(o) => json(200, order_status(o)),
                None => error(503, "Service Unavailable"),
            }
        }
        ("DELETE", ["iserver", "account", account, "order", id]) => {
            if let Some(refusal) = accounts_first(g.accounts_read, "/iserver/accounts") {
                return refusal.into();
            }
            if *account != IBKR_ACCOUNT {
                return error(400, &format!("Account {account} is not valid")).into();
            }
            let (session, now) = (g.session, now_ms());
            let cancel = |o: &mut Order| {
                if o.working() {
                    (o.status, o.updated_ms, o.session) = ("Cancelled", now, session);
                }
            };
            // "Submitting '-1' will cancel all open orders."
            if *id == "-1" {
                g.orders.iter_mut().for_each(cancel);
                return json(200, json!({"msg": "Request was submitted", "order_id": -1, "conid": -1, "account": null}))
                    .into();
            }
            let Ok(number) = id.parse::<i64>() else { return error(400, "orderId must be a number").into() };
            match g.orders.iter_mut().find(|o| o.id == number) {
                None => reject(&format!("OrderID {id} doesn't exist")),
                Some(o) => {
                    cancel(o);
                    json(200, json!({"msg": "Request was submitted", "order_id": number, "conid": o.conid,
                        "account": IBKR_ACCOUNT}))
                }
            }
        }
        ("GET", ["portfolio", "accounts"]) => {
            g.portfolio_read = true;
            json(200, json!([{"id": IBKR_ACCOUNT, "accountId": IBKR_ACCOUNT, "accountVan": IBKR_ACCOUNT,
                "accountTitle": "", "displayName": IBKR_ACCOUNT, "accountAlias": null, "accountStatus": 1_644_814_800_000_i64,
                "currency": "USD", "type": "DEMO", "tradingType": "PMRGN", "businessType": "IB_PROSERVE",
                "ibEntity": "IBLLC-US", "faclient": false, "clearingStatus": "O", "covestor": false,
                "noClientTrading": false, "trackVirtualFXPortfolio": true,
                "parent": {"mmc": [], "accountId": "", "isMParent": false, "isMChild": false, "isMultiplex": false},
                "desc": IBKR_ACCOUNT}]))
        }
        ("POST", ["portfolio", account, "positions", "invalidate"]) => {
            if *account != IBKR_ACCOUNT {
                return error(400, &format!("Account {account} is not valid")).into();
            }
            g.positions_served = None;
            json(200, json!({"message": "success"}))
        }
        ("GET", ["portfolio", account, rest @ ..]) if matches!(rest, ["positions", _] | ["summary"]) => {
            if let Some(refusal) = accounts_first(g.portfolio_read, "/portfolio/accounts") {
                return refusal.into();
            }
            if *account != IBKR_ACCOUNT {
                return error(400, &format!("Account {account} is not valid")).into();
            }
            match rest {
                ["positions", page] => match page.parse::<usize>() {
                    Ok(page) => {
                        let served = g.positions_served.get_or_insert_with(|| g.positions.iter().map(position).collect());
                        json(200, Value::Array(served.iter().skip(page * PAGE_SIZE).take(PAGE_SIZE).cloned().collect()))
                    }
                    Err(_) => error(400, "pageId must be a number from 0"),
                },
                _ => json(200, summary(g)),
            }
        }
        _ => error(404, "Not Found"),
    }
    .into()
}

/// The gateway's refusal of a request made before the accounts endpoint
/// that the docs say "must be called prior" to it.
fn accounts_first(read: bool, which: &str) -> Option<Response> {
    (!read).then(|| error(400, &format!("Please query {which} first")))
}

fn auth_status(g: &Gateway) -> Value {
    json!({"authenticated": g.authenticated, "competing": false, "connected": true, "message": "",
        "MAC": "98:F2:B3:23:BF:A0", "serverInfo": {"serverName": SERVER_INFO.0, "serverVersion": SERVER_INFO.1},
        "fail": ""})
}
