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
        ("GET", ["iserver", "account", "orders"]) => {
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

/// `/iserver/secdef/search`. The docs return "all matching records" as an
/// array and document no error for a symbol without any, so none is `[]`.
/// The conid comes as a string here (it is a number everywhere else).
fn search(g: &Gateway, symbol: Option<&str>, sec_type: Option<&str>) -> Response {
    let Some(symbol) = symbol.filter(|s| !s.is_empty()) else { return error(400, "symbol is required") };
    if sec_type.is_some_and(|t| !["STK", "IND", "BOND"].contains(&t)) {
        return error(400, "secType must be one of STK, IND, BOND");
    }
    let found =
        g.contracts.iter().filter(|(s, _)| s.eq_ignore_ascii_case(symbol) && sec_type.is_none_or(|t| t == "STK"));
    let answers = found.map(|(s, conid)| {
        json!({"conid": conid.to_string(), "companyHeader": format!("{s} INC - NASDAQ"), "companyName": format!("{s} INC"),
            "symbol": s, "description": "NASDAQ", "restricted": null, "sections": [{"secType": "STK"}]})
    });
    json(200, Value::Array(answers.collect()))
}

/// A period or bar (`5min`, `1h`, `2d`, `1w`, `1m`, `1y`) in seconds, a
/// month taken as 30 days and a year as 365.
fn duration(text: &str) -> Option<(u32, &str, i64)> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (count, unit) = (text[..split].parse::<u32>().ok()?, &text[split..]);
    let seconds = match unit {
        "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "m" => 30 * 86_400,
        "y" => 365 * 86_400,
        _ => return None,
    };
    (count > 0).then_some((count, unit, i64::from(count) * seconds))
}

/// `/iserver/marketdata/history`, with the documented period ranges
/// ({1-30}min, {1-8}h, {1-1000}d, {1-792}w, {1-182}m, {1-15}y), bar values
/// and "Step Size" table. The docs disagree on which of period and bar is
/// required (the reference says period, the campus page bar), so both are.
fn history(g: &Gateway, q: &HashMap<String, String>) -> Response {
    let Some(conid) = q.get("conid").and_then(|c| c.parse::<i64>().ok()) else {
        return error(400, "conid is required and must be a number");
    };
    let limits = [("min", 30), ("h", 8), ("d", 1000), ("w", 792), ("m", 182), ("y", 15)];
    let Some((count, unit, period)) = q.get("period").and_then(|p| duration(p)) else {
        return error(400, "period must be {1-30}min, {1-8}h, {1-1000}d, {1-792}w, {1-182}m or {1-15}y");
    };
    if limits.iter().any(|(u, max)| *u == unit && count > *max) {
        return error(400, "period is out of range");
    }
    let bars =
        ["1min", "2min", "3min", "5min", "10min", "15min", "30min", "1h", "2h", "3h", "4h", "8h", "1d", "1w", "1m"];
    let bar_text = q.get("bar").map(String::as_str).unwrap_or_default();
    let Some((_, _, bar)) = bars.contains(&bar_text).then(|| duration(bar_text)).flatten() else {
        return error(
            400,
            "bar must be one of 1min, 2min, 3min, 5min, 10min, 15min, 30min, 1h, 2h, 3h, 4h, 8h, 1d, 1w, 1m",
        );
    };
    // Step size: (period, smallest bar, largest bar). Between two columns the
    // smallest bar comes from the column below, the largest from the one above.
    let steps = "1min:1min:1min 1h:1min:8h 1d:1min:8h 1w:10min:1w 1m:1h:1m 3m:2h:1m 6m:4h:1m 1y:8h:1m 2y:1d:1m 3y:1d:1m 15y:1w:1m";
    let steps: Vec<Vec<&str>> = steps.split(' ').map(|step| step.split(':').collect()).collect();
    let secs = |text: &str| duration(text).map_or(0, |(_, _, s)| s);
    let below = steps.iter().rev().find(|step| secs(step[0]) <= period).unwrap_or(&steps[0]);
    let above = steps.iter().find(|step| secs(step[0]) >= period).unwrap_or(&steps[steps.len() - 1]);
    if bar < secs(below[1]) || bar > secs(above[2]) {
        return error(400, &format!("bar {bar_text} is not allowed for period {}", q["period"]));
    }
    let outside_rth = match q.get("outsideRth").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return error(400, "outsideRth must be true or false"),
    };
    if q.get("source").is_some_and(|s| !["Trades", "Midpoint", "Bid_Ask"].contains(&s.as_str())) {
        return error(400, "source must be Trades, Midpoint or Bid_Ask");
    }
    // The window is the period ending at startTime (UTC), else now, end excluded.
    let end = match q.get("startTime") {
        Some(text) => match parse_utc(text) {
            Some(ms) => ms,
            None => return error(400, "startTime must be YYYYMMDD-HH:mm:ss"),
        },
        None => now_ms(),
    };
    let start = end - period * 1000;
    let symbol = g.contracts.iter().find(|(_, c)| *c == conid).map_or(String::new(), |(s, _)| s.clone());
    let empty = BTreeMap::new();
    let series = match g.bars.get(&conid) {
        Some(series) => series,
        None if !symbol.is_empty() => &empty,
        None => return error(400, &format!("conid {conid} is not a valid contract")),
    };
    let window: Vec<(&i64, &[f64; 5])> = series.range(start..end).collect();
    let bars = &window[window.len().saturating_sub(MAX_POINTS)..];
    let first = bars.first().map_or(start, |(t, _)| **t);
    // "%h/%v/%t": price scaled by priceFactor, volume, minutes from the start.
    let extreme = |index: usize, better: fn(f64, f64) -> bool| {
        let mut pick: Option<&(&i64, &[f64; 5])> = None;
        for candidate in bars {
            if pick.is_none_or(|p| better(candidate.1[index], p.1[index])) {
                pick = Some(candidate);
            }
        }
        pick.map_or(String::new(), |(t, v)| {
            format!("{}/{}/{}", (v[index] * 100.0).round(), v[4], (**t - first) / 60_000)
        })
    };
    let data: Vec<Value> =
        bars.iter().map(|(t, v)| json!({"o": v[0], "c": v[3], "h": v[1], "l": v[2], "v": v[4], "t": t})).collect();
    // `points` is taken as the number of bars served.
    json(
        200,
        json!({"serverId": "20477", "symbol": symbol, "text": if symbol.is_empty() { String::new() } else { format!("{symbol} INC") }, "priceFactor": 100,
        "startTime": utc(first, false), "high": extreme(1, |a, b| a > b), "low": extreme(2, |a, b| a < b),
        "timePeriod": q["period"], "barLength": bar, "mdAvailability": "S", "mktDataDelay": 0,
        "outsideRth": outside_rth, "tradingDayDuration": 1440, "volumeFactor": 1, "priceDisplayRule": 1,
        "priceDisplayValue": "2", "negativeCapable": false, "messageVersion": 2, "points": data.len(), "data": data,
        "travelTime": 1}),
    )
}

/// Why a ticket is refused: malformed (400), or well formed but not
/// acceptable (the documented 200 reject object).
enum Refusal {
    Bad(String),
    Reject(String),
}

/// Reads an order ticket as the reference types its fields.
fn ticket(g: &Gateway, account: &str, body: &[u8]) -> Result<Order, Refusal> {
    let bad = Refusal::Bad;
    if account != IBKR_ACCOUNT {
        return Err(bad(format!("Account {account} is not valid")));
    }
    let request: Value = serde_json::from_slice(body).map_err(|_| bad("body is not JSON".into()))?;
    // The reference body is {"orders": [ticket]}. Several tickets are only for
    // brackets and OCA groups ("does not ... support ... unrelated orders in
    // bulk"), which are not modelled.
    let tickets = request.get("orders").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let [t] = tickets else { return Err(bad("orders must hold one order ticket".into())) };
    let text = |key: &str| match t.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(bad(format!("{key} must be a string"))),
    };
    let number = |key: &str| match t.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let text = n.to_string();
            let value = text.parse::<Decimal>().or_else(|_| Decimal::from_scientific(&text));
            value.map(Some).map_err(|_| bad(format!("{key} is out of range")))
        }
        Some(_) => Err(bad(format!("{key} must be a number"))),
    };
    let one_of = |key: &str, allowed: &[&str]| match text(key)? {
        Some(v) if allowed.contains(&v) => Ok(v.to_string()),
        _ => Err(bad(format!("{key} must be one of {}", allowed.join(", ")))),
    };
    if text("acctId")?.is_some_and(|a| a != account) {
        return Err(bad("acctId differs from the account in the path".into()));
    }
    if text("parentId")?.is_some() {
        return Err(bad("bracket orders are not modelled".into()));
    }
    // conid is an int in order tickets (secdef/search answers it as a string).
    // The documented alternative, conidex, is not modelled.
    let conid = t.get("conid").and_then(Value::as_i64).ok_or_else(|| bad("conid must be an integer".into()))?;
    // Of the documented types, the fake models LMT, MKT, STP and STOP_LIMIT.
    let kind = one_of("orderType", &["LMT", "MKT", "STP", "STOP_LIMIT"])?;
    let side = one_of("side", &["BUY", "SELL"])?;
    // PAX is "CRYPTO ONLY"; the fake's contracts are stocks.
    let tif = one_of("tif", &["DAY", "GTC", "IOC", "OPG", "OVT", "OND"])?;
    // "Only whole share values are supported."
    let qty = number("quantity")?.filter(|q| q.is_sign_positive() && !q.is_zero() && q.fract().is_zero());
    let qty = qty.ok_or_else(|| bad("quantity must be a whole number of shares above 0".into()))?;
    let (price, aux) = (number("price")?, number("auxPrice")?);
    if price.or(aux).is_some_and(|p| p <= Decimal::ZERO) {
        return Err(bad("prices must be above 0".into()));
    }
    if (price.is_none() && kind != "MKT") || (aux.is_none() && kind == "STOP_LIMIT") {
        return Err(bad(format!("{kind} needs price{}", if kind == "STOP_LIMIT" { " and auxPrice" } else { "" })));
    }
    if t.get("outsideRTH").is_some_and(|v| !v.is_boolean()) {
        return Err(bad("outsideRTH must be a bool".into()));
    }
    let coid = text("cOID")?.map(str::to_string);
    let Some((symbol, _)) = g.contracts.iter().find(|(_, c)| *c == conid) else {
        return Err(Refusal::Reject(format!("Contract {conid} is not valid")));
    };
    // cOID "must be unique for a 24h span"; the gateway's refusal is a reject object.
    if let Some(coid) = coid.as_ref().filter(|c| g.orders.iter().any(|o| o.coid.as_ref() == Some(c))) {
        return Err(Refusal::Reject(format!(
            "Order couldn't be submitted: Local order ID={coid} is already registered."
        )));
    }
    let (symbol, now, zero) = (symbol.clone(), now_ms(), Decimal::ZERO);
    let (filled, avg, placed_ms, updated_ms, status, session) = (zero, zero, now, now, "Submitted", 0);
    Ok(Order {
        id: 0,
        coid,
        conid,
        symbol,
        side,
        kind,
        qty,
        price,
        aux,
        tif,
        status,
        filled,
        avg,
        placed_ms,
        updated_ms,
        session,
    })
}

fn place(g: &mut Gateway, account: &str, body: &[u8]) -> Reply {
    let fault = g.order_faults.pop_front();
    match fault {
        Some(OrderFault::Status { code, retry_after }) => return injected(code, retry_after).into(),
        Some(OrderFault::Refuse { status, message, .. } | OrderFault::RefuseNamed { status, message, .. }) => {
            return json(status, json!({"error": message})).into();
        }
        _ => {}
    }
    if let Some(refusal) = accounts_first(g.accounts_read, "/iserver/accounts") {
        return refusal.into();
    }
    let order = match ticket(g, account, body) {
        Ok(order) => order,
        Err(Refusal::Bad(message)) => return error(400, &message).into(),
        Err(Refusal::Reject(message)) => return reject(&message).into(),
    };
    match fault {
        Some(fault) => Reply::Accepted(accept(g, order), fault),
        None => {
            let questions = std::mem::take(&mut g.questions);
            ask(g, Pending { reply_id: String::new(), order, questions })
        }
    }
}

/// Takes the order: it rests as Submitted until a test fills it.
fn accept(g: &mut Gateway, mut order: Order) -> Value {
    (order.id, order.session) = (g.next_id, g.session);
    g.next_id += 1;
    g.orders.push(order);
    // The placement answer has order_id as a string; elsewhere it is a number.
    json!([{"order_id": (g.next_id - 1).to_string(), "order_status": "Submitted", "encrypt_message": "1"}])
}

/// Asks the order's next question and holds it, or takes it when none is left.
fn ask(g: &mut Gateway, mut pending: Pending) -> Reply {
    let Some((message_id, text)) = pending.questions.pop_front() else {
        return json(200, accept(g, pending.order)).into();
    };
    g.questions_asked += 1;
    pending.reply_id = format!("07a13a5a-4a48-44a5-bb25-{:012x}", g.questions_asked);
    let answer =
        json!([{"id": pending.reply_id, "message": [text], "isSuppressed": false, "messageIds": [message_id]}]);
    g.pending = Some(pending);
    json(200, answer).into()
}

fn confirm(g: &mut Gateway, reply_id: &str, body: &[u8]) -> Reply {
    let confirmed =
        serde_json::from_slice::<Value>(body).ok().and_then(|v| v.get("confirmed").and_then(Value::as_bool));
    let Some(confirmed) = confirmed else { return error(400, "body must be {\"confirmed\": bool}").into() };
    g.replies.push((reply_id.to_string(), confirmed));
    // "attempts to confirm invalid replies will result in a timeout (503)".
    let Some(pending) = g.pending.take().filter(|p| p.reply_id == reply_id) else {
        return error(503, "Service Unavailable").into();
    };
    if !confirmed {
        // "false will decline the message and discard the order"; the docs show
        // no answer for it, so it is the documented reject object.
        return reject("The order was declined and discarded").into();
    }
    ask(g, pending)
}

fn live_orders(g: &mut Gateway, q: &HashMap<String, String>) -> Response {
    // Filter values as "Order Status Values" lists them (`pre_submitted`),
    // matched without case or underscores so status names match too.
    let normal = |s: &str| s.to_ascii_lowercase().replace('_', "");
    let known = "inactive pendingsubmit presubmitted submitted filled pendingcancel precancelled cancelled warnstate sortbytime";
    let filters: Vec<String> = q.get("filters").map_or(Vec::new(), |f| f.split(',').map(normal).collect());
    if let Some(unknown) = filters.iter().find(|f| !known.split(' ').any(|k| k == f.as_str())) {
        return error(400, &format!("unknown filter {unknown}"));
    }
    let force = match q.get("force").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return error(400, "force must be true or false"),
    };
    // The first call of a session finds the gateway still loading: an empty
    // list, "snapshot": false. "force ... Submission will appear as a blank array."
    if force || !g.orders_primed {
        g.orders_primed = true;
        return json(200, json!({"orders": [], "snapshot": false}));
    }
    let wanted = |o: &&Order| filters.iter().all(|f| f == "sortbytime") || filters.contains(&normal(o.status));
    // "Orders currently working as well as those cancelled or filled within the same brokerage session",
    // working ones first.
    let mut orders: Vec<&Order> =
        g.orders.iter().filter(|o| o.working() || o.session == g.session).filter(wanted).collect();
    orders.sort_by_key(|o| !o.working());
    json(200, json!({"orders": orders.into_iter().map(live_order).collect::<Vec<_>>(), "snapshot": true}))
}

/// The order type as live orders name it, and as `origOrderType`/`order_type` do.
fn type_names(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "LMT" => ("Limit", "LIMIT"),
        "STP" => ("Stop", "STOP"),
        "STOP_LIMIT" => ("Stop Limit", "STOP_LIMIT"),
        _ => ("Market", "MARKET"),
    }
}

/// A quantity as the order status strings it: "5.0".
fn quantity(d: Decimal) -> String {
    let text = d.normalize().to_string();
    if text.contains('.') { text } else { format!("{text}.0") }
}

/// "Sold 5 Market, GTC", "Buy 10 AAPL Limit 187.5, Day", as in the docs.
fn description(o: &Order, with_symbol: bool) -> String {
    let done = o.filled == o.qty;
    let verb = match (o.side.as_str(), done) {
        ("BUY", false) => "Buy",
        ("BUY", true) => "Bought",
        (_, false) => "Sell",
        _ => "Sold",
    };
    let symbol = if with_symbol { format!(" {}", o.symbol) } else { String::new() };
    let prices: Vec<String> = [o.aux, o.price].iter().flatten().map(|p| format!(" {}", p.normalize())).collect();
    let tif = if o.tif == "DAY" { "Day" } else { &o.tif };
    format!("{verb} {}{symbol} {}{}, {tif}", o.qty.normalize(), type_names(&o.kind).0, prices.concat())
}

/// "the size of the order and how much of it has been filled": the docs show
/// "5" for a whole fill; a partial one is taken as "filled/total".
fn size_and_fills(o: &Order) -> String {
    if o.filled == o.qty {
        o.qty.normalize().to_string()
    } else {
        format!("{}/{}", o.filled.normalize(), o.qty.normalize())
    }
}

fn live_order(o: &Order) -> Value {
    let (kind, original) = type_names(&o.kind);
    let mut v = json!({"acct": IBKR_ACCOUNT, "conidex": o.conid.to_string(), "conid": o.conid, "account": IBKR_ACCOUNT,
        "orderId": o.id, "cashCcy": "USD", "sizeAndFills": size_and_fills(o), "orderDesc": description(o, false),
        "description1": o.symbol, "ticker": o.symbol, "secType": "STK", "listingExchange": "NASDAQ.NMS",
        "remainingQuantity": num(o.qty - o.filled), "filledQuantity": num(o.filled), "totalSize": num(o.qty),
        "companyName": format!("{} INC", o.symbol), "status": o.status, "order_ccp_status": o.status,
        "origOrderType": original, "supportsTaxOpt": "1", "lastExecutionTime": utc(o.updated_ms, true),
        "orderType": kind, "bgColor": "#FFFFFF", "fgColor": "#000000", "timeInForce": o.tif,
        "lastExecutionTime_r": o.updated_ms, "side": o.side});
    if let Some(coid) = &o.coid {
        v["order_ref"] = json!(coid);
    }
    // avgPrice is documented as a string; price (older reference) as a number.
    if !o.filled.is_zero() {
        v["avgPrice"] = json!(o.avg.normalize().to_string());
    }
    if let Some(price) = o.price {
        v["price"] = num(price);
    }
    if let Some(aux) = o.aux {
        v["auxPrice"] = num(aux);
    }
    v
}

/// `/iserver/account/order/status/{orderId}`, with the documented fields
/// (sizes and prices are strings there).
fn order_status(o: &Order) -> Value {
    let done = !o.working();
    // order_ccp_status is "the status as a code"; the docs' "2" for Filled
    // is FIX OrdStatus, so the other codes are FIX's too.
    let (code, text) = match o.status {
        "Filled" => ("2", "Order Filled"),
        "Cancelled" => ("4", "Order Cancelled"),
        _ if o.filled.is_zero() => ("0", "Order Submitted"),
        _ => ("1", "Order Submitted"),
    };
    let mut v = json!({"sub_type": null, "request_id": "1", "server_id": "0", "order_id": o.id,
        "conidex": o.conid.to_string(), "conid": o.conid, "symbol": o.symbol,
        "side": if o.side == "BUY" { "B" } else { "S" }, "contract_description_1": o.symbol,
        "listing_exchange": "NASDAQ.NMS", "option_acct": "c", "company_name": format!("{} INC", o.symbol),
        "size": quantity(o.qty - o.filled), "total_size": quantity(o.qty), "currency": "USD", "account": IBKR_ACCOUNT,
        "order_type": type_names(&o.kind).1, "cum_fill": quantity(o.filled), "order_status": o.status,
        "order_ccp_status": code, "order_status_description": text, "tif": o.tif, "fg_color": "#FFFFFF",
        "bg_color": "#000000", "order_not_editable": done, "editable_fields": "", "cannot_cancel_order": done,
        "deactivate_order": false, "sec_type": "STK", "available_chart_periods": "#R|1",
        "order_description": description(o, false), "order_description_with_contract": description(o, true),
        "alert_active": 1, "child_order_type": "0", "order_clearing_account": IBKR_ACCOUNT,
        "size_and_fills": size_and_fills(o), "exit_strategy_tool_availability": "1",
        "allowed_duplicate_opposite": true, "order_time": utc(o.placed_ms, true)});
    if !o.filled.is_zero() {
        let average = o.avg.normalize().to_string();
        v["exit_strategy_chart_description"] =
            json!(format!("{} {} @ {average}", if o.side == "BUY" { "Bought" } else { "Sold" }, o.filled.normalize()));
        (v["average_price"], v["exit_strategy_display_price"]) = (json!(average), json!(average));
    }
    // The older reference's order-status model also names these two.
    let (limit, stop) = match o.kind.as_str() {
        "LMT" => (o.price, None),
        "STP" => (None, o.price),
        _ => (o.price.filter(|_| o.kind == "STOP_LIMIT"), o.aux),
    };
    if let Some(limit) = limit {
        v["limit_price"] = json!(limit.normalize().to_string());
    }
    if let Some(stop) = stop {
        v["stop_price"] = json!(stop.normalize().to_string());
    }
    v
}

fn position(p: &Position) -> Value {
    json!({"acctId": IBKR_ACCOUNT, "conid": p.conid, "contractDesc": p.symbol, "position": num(p.qty),
        "mktPrice": num(p.last), "mktValue": num(p.qty * p.last), "currency": "USD", "avgCost": num(p.avg),
        "avgPrice": num(p.avg), "realizedPnl": 0.0, "unrealizedPnl": num((p.last - p.avg) * p.qty), "exchs": null,
        "expiry": null, "putOrCall": null, "multiplier": null, "strike": 0.0, "exerciseStyle": null,
        "conExchMap": [], "assetClass": "STK", "undConid": 0, "model": "", "ticker": p.symbol,
        "name": format!("{} INC", p.symbol), "listingExchange": "NASDAQ", "isUS": true})
}

/// `/portfolio/{accountId}/summary`: lowercased tags; the account is taken
/// as a cash account, so buying power is the cash.
fn summary(g: &Gateway) -> Value {
    let now = now_ms();
    let entry = |amount: Decimal| json!({"amount": num(amount), "currency": "USD", "isNull": false, "timestamp": now, "value": null, "severity": 0});
    let stock: Decimal = g.positions.iter().map(|p| p.qty * p.last).sum();
    let gross: Decimal = g.positions.iter().map(|p| (p.qty * p.last).abs()).sum();
    json!({"accountcode": {"amount": 0.0, "currency": null, "isNull": false, "timestamp": now, "value": IBKR_ACCOUNT,
            "severity": 0},
        "totalcashvalue": entry(g.cash), "settledcash": entry(g.cash), "availablefunds": entry(g.cash),
        "excessliquidity": entry(g.cash), "buyingpower": entry(g.cash.max(Decimal::ZERO)),
        "netliquidation": entry(g.cash + stock), "equitywithloanvalue": entry(g.cash + stock),
        "grosspositionvalue": entry(gross)})
}
