//! Binance spot trading (`/api/v3/order`, `/api/v3/openOrders`, `/api/v3/account`).
//!
//! SIGNED endpoints take a `signature` parameter: the lowercase hex
//! HMAC-SHA256, keyed with the API secret, of the exact query string (with
//! `timestamp` and `recvWindow` in it), plus the key in `X-MBX-APIKEY`.
//! `timestamp` is on the venue's clock: its offset from ours is measured
//! with `GET /api/v3/time`. Errors are `{"code", "msg"}`; a 5XX means the
//! outcome is unknown. Orders are rounded to and checked against the
//! symbol's filters from `exchangeInfo` (see `filters`), which are
//! fetched again after [`FILTER_TTL`] or a filter failure (-1013). Stop
//! orders go as `STOP_LOSS` (with `stopPrice`) and stop-limits as
//! `STOP_LOSS_LIMIT` (with `stopPrice`, `price` and `timeInForce`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rust_decimal::Decimal;
use serde::Deserialize;
use sha2::Sha256;

use super::filters::parse_filters;
pub use super::filters::{FILTER_TTL, LotRule, NotionalRule, SymbolFilters};
use crate::broker::{Broker, OrderRequest, OrderStatus, VenueAccount, VenueOrder, VenuePosition};
use crate::order::{OrderType, Side, TimeInForce};
use crate::venue::{ErrorBody, Means, VenueCode, VenueError, excerpt, json, required, send};

const VENUE: &str = "binance";
/// How long a signed request stays valid at the venue, in milliseconds.
const RECV_WINDOW: u64 = 5_000;

/// Key pair from `BINANCE_API_KEY` and `BINANCE_API_SECRET`.
#[derive(Clone)]
pub struct BinanceCredentials {
    pub api_key: String,
    pub secret: String,
}

impl BinanceCredentials {
    pub fn from_env() -> Result<Self, VenueError> {
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, VenueError> {
        Ok(Self { api_key: required("BINANCE_API_KEY", &lookup)?, secret: required("BINANCE_API_SECRET", &lookup)? })
    }
}

pub struct BinanceBroker {
    client: reqwest::Client,
    base_url: String,
    credentials: BinanceCredentials,
    /// The quote asset whose balance is cash, e.g. `USDT`.
    quote_asset: String,
    /// Filters per symbol and when they were fetched.
    filters: tokio::sync::Mutex<HashMap<String, (Instant, SymbolFilters)>>,
    filter_ttl: Duration,
    /// Time source for `timestamp`; tests fix it.
    now: fn() -> u64,
    /// The venue's clock minus ours, in ms: measured with `GET /api/v3/time`
    /// before the first signed request and again when one is refused as
    /// outside `recvWindow` (-1021); the user data stream signs with it too.
    clock: Arc<VenueClock>,
}

/// How far the venue's clock is from ours, once measured.
#[derive(Debug, Default)]
pub struct VenueClock {
    offset: std::sync::Mutex<Option<i64>>,
}

impl VenueClock {
    pub fn offset(&self) -> Option<i64> {
        *self.offset.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn set(&self, offset: i64) {
        *self.offset.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(offset);
    }

    /// The time now on the venue's clock (ours until it is measured), in ms.
    pub fn now_ms(&self) -> i64 {
        let local = i64::try_from(system_ms()).unwrap_or(i64::MAX);
        local.saturating_add(self.offset().unwrap_or(0)).max(0)
    }
}

fn system_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireOrder {
    order_id: i64,
    client_order_id: String,
    symbol: String,
    side: String,
    orig_qty: String,
    executed_qty: String,
    cummulative_quote_qty: String,
    status: String,
}

#[derive(Deserialize)]
struct WireError {
    code: Option<i64>,
    msg: Option<String>,
}

#[derive(Deserialize)]
struct WireBalance {
    asset: String,
    free: String,
    locked: String,
}

#[derive(Deserialize)]
struct WireAccount {
    balances: Vec<WireBalance>,
}

fn malformed(endpoint: &str, body: &[u8], message: String) -> VenueError {
    VenueError::Malformed { venue: VENUE, endpoint: endpoint.into(), body: excerpt(body), message }
}

fn decimal(endpoint: &str, body: &[u8], what: &str, text: &str) -> Result<Decimal, VenueError> {
    crate::venue::decimal(VENUE, endpoint, body, what, text)
}

/// Maps a non-2XX answer (see [`crate::venue::failure`]): errors are
/// `{"code", "msg"}` with a negative numeric code.
fn failure(endpoint: &str, status: u16, body: &[u8]) -> VenueError {
    crate::venue::failure(VENUE, endpoint, status, body, error_body)
}

/// What a Binance error body says (orders and market data alike).
pub(crate) fn error_body(_status: u16, body: &[u8]) -> ErrorBody {
    let wire: Option<WireError> = serde_json::from_slice(body).ok();
    let (code, message) = wire.map(|w| (w.code, w.msg)).unwrap_or_default();
    let means = match code {
        // -1022 bad signature, -2014 bad key format, -2015 key, IP or
        // permission refused.
        Some(-1022 | -2014 | -2015) => Some(Means::Unauthorized),
        // Our timestamp was outside recvWindow: nothing was done.
        Some(-1021) => Some(Means::Transient),
        _ => None,
    };
    ErrorBody { code: code.map(VenueCode::Number), message, means }
}

/// The Binance error code in a body, if it has one.
fn error_code(body: &[u8]) -> Option<i64> {
    serde_json::from_slice::<WireError>(body).ok().and_then(|w| w.code)
}

/// Refuses an order before it is sent.
fn refuse(message: String) -> VenueError {
    VenueError::Rejected {
        venue: VENUE,
        endpoint: "/api/v3/order".into(),
        status: 400,
        code: None,
        message: format!("refused before sending: {message}"),
    }
}

fn order_from_wire(endpoint: &str, body: &[u8], w: WireOrder) -> Result<VenueOrder, VenueError> {
    let side = match w.side.as_str() {
        "BUY" => Side::Buy,
        "SELL" => Side::Sell,
        other => return Err(malformed(endpoint, body, format!("side `{other}`"))),
    };
    let status = match w.status.as_str() {
        "FILLED" => OrderStatus::Filled,
        "PARTIALLY_FILLED" => OrderStatus::PartiallyFilled,
        "CANCELED" => OrderStatus::Canceled,
        "EXPIRED" | "EXPIRED_IN_MATCH" => OrderStatus::Expired,
        "REJECTED" => OrderStatus::Rejected,
        _ => OrderStatus::Accepted,
    };
    let filled = decimal(endpoint, body, "executedQty", &w.executed_qty)?;
    let quote = decimal(endpoint, body, "cummulativeQuoteQty", &w.cummulative_quote_qty)?;
    Ok(VenueOrder {
        venue_order_id: w.order_id.to_string(),
        client_order_id: w.client_order_id,
        symbol: w.symbol,
        side,
        qty: decimal(endpoint, body, "origQty", &w.orig_qty)?,
        filled_qty: filled,
        filled_avg_price: match quote.checked_div(filled) {
            _ if filled.is_zero() => None,
            Some(price) => Some(price),
            None => return Err(malformed(endpoint, body, format!("{quote} over {filled} is out of range"))),
        },
        status,
    })
}

impl BinanceBroker {
    pub fn new(client: reqwest::Client, base_url: &str, credentials: BinanceCredentials, quote_asset: &str) -> Self {
        Self {
            client,
            base_url: base_url.trim_end_matches('/').to_string(),
            credentials,
            quote_asset: quote_asset.to_string(),
            filters: tokio::sync::Mutex::new(HashMap::new()),
            filter_ttl: FILTER_TTL,
            now: system_ms,
            clock: Arc::default(),
        }
    }

    /// The venue's clock as this broker measures it, for others that sign.
    pub fn clock(&self) -> Arc<VenueClock> {
        self.clock.clone()
    }

    /// Sets how long fetched filters are trusted (default [`FILTER_TTL`]).
    pub fn with_filter_ttl(mut self, ttl: Duration) -> Self {
        self.filter_ttl = ttl;
        self
    }

    fn offset(&self) -> Option<i64> {
        self.clock.offset()
    }

    /// Measures the venue's clock against ours with `GET /api/v3/time`,
    /// taking the venue's time as of the middle of the round trip.
    pub async fn sync_clock(&self) -> Result<i64, VenueError> {
        let endpoint = "/api/v3/time";
        let before = (self.now)();
        let (status, body) = send(VENUE, endpoint, self.client.get(format!("{}{endpoint}", self.base_url))).await?;
        let after = (self.now)();
        if !(200..300).contains(&status) {
            return Err(failure(endpoint, status, &body));
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct ServerTime {
            server_time: i64,
        }
        let server = json::<ServerTime>(VENUE, endpoint, &body)?.server_time;
        let local = i64::try_from(before / 2 + after / 2).unwrap_or(i64::MAX);
        let offset = server.saturating_sub(local);
        self.clock.set(offset);
        Ok(offset)
    }

    /// Signs `params` and sends them as the query string. Before the first
    /// request the venue's clock is measured; a refusal for a timestamp
    /// outside `recvWindow` (-1021, not acted on) measures it again and
    /// sends once more.
    async fn signed(
        &self,
        method: reqwest::Method,
        endpoint: &str,
        params: &[(&str, String)],
    ) -> Result<(u16, Vec<u8>), VenueError> {
        if self.offset().is_none() {
            self.sync_clock().await?;
        }
        let (status, body) = self.signed_once(method.clone(), endpoint, params).await?;
        if status != 400 || error_code(&body) != Some(-1021) {
            return Ok((status, body));
        }
        tracing::warn!(venue = VENUE, endpoint, "timestamp outside recvWindow; measuring the venue's clock again");
        self.sync_clock().await?;
        self.signed_once(method, endpoint, params).await
    }

    async fn signed_once(
        &self,
        method: reqwest::Method,
        endpoint: &str,
        params: &[(&str, String)],
    ) -> Result<(u16, Vec<u8>), VenueError> {
        let now = i64::try_from((self.now)()).unwrap_or(i64::MAX);
        let timestamp = now.saturating_add(self.offset().unwrap_or(0)).max(0);
        let mut url = reqwest::Url::parse(&format!("{}{endpoint}", self.base_url)).map_err(|e| {
            VenueError::Unreachable { venue: VENUE, endpoint: endpoint.into(), message: format!("bad URL: {e}") }
        })?;
        // Signed as sent: the form-encoded query, then its signature.
        url.query_pairs_mut()
            .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())))
            .append_pair("recvWindow", &RECV_WINDOW.to_string())
            .append_pair("timestamp", &timestamp.to_string());
        let signature = sign(&self.credentials.secret, url.query().unwrap_or_default());
        url.query_pairs_mut().append_pair("signature", &signature);
        let request = self.client.request(method, url).header("X-MBX-APIKEY", &self.credentials.api_key);
        send(VENUE, endpoint, request).await
    }

    /// The symbol's filters, from `exchangeInfo` when not fetched within
    /// the TTL.
    pub async fn filters(&self, symbol: &str) -> Result<SymbolFilters, VenueError> {
        let mut cache = self.filters.lock().await;
        if let Some((fetched, found)) = cache.get(symbol)
            && fetched.elapsed() < self.filter_ttl
        {
            return Ok(*found);
        }
        let found = self.fetch_filters(symbol).await?;
        cache.insert(symbol.to_string(), (Instant::now(), found));
        Ok(found)
    }

    /// Forgets the symbol's filters, so the next order fetches them.
    pub async fn forget_filters(&self, symbol: &str) {
        self.filters.lock().await.remove(symbol);
    }

    async fn fetch_filters(&self, symbol: &str) -> Result<SymbolFilters, VenueError> {
        let endpoint = "/api/v3/exchangeInfo";
        let request = self.client.get(format!("{}{endpoint}", self.base_url)).query(&[("symbol", symbol)]);
        let (status, body) = send(VENUE, endpoint, request).await?;
        if !(200..300).contains(&status) {
            return Err(failure(endpoint, status, &body));
        }
        parse_filters(endpoint, &body, symbol)
    }

    /// The symbol's recent average price (`GET /api/v3/avgPrice`), which the
    /// venue values market orders at for its notional filters.
    async fn average_price(&self, symbol: &str) -> Result<Decimal, VenueError> {
        let endpoint = "/api/v3/avgPrice";
        let request = self.client.get(format!("{}{endpoint}", self.base_url)).query(&[("symbol", symbol)]);
        let (status, body) = send(VENUE, endpoint, request).await?;
        if !(200..300).contains(&status) {
            return Err(failure(endpoint, status, &body));
        }
        #[derive(Deserialize)]
        struct AvgPrice {
            price: String,
        }
        let answer: AvgPrice = json(VENUE, endpoint, &body)?;
        decimal(endpoint, &body, "price", &answer.price)
    }

    /// Queries one order by `id` (`orderId` or `origClientOrderId`); an
    /// order the venue does not have is `None`.
    async fn lookup(&self, symbol: &str, (key, id): (&str, &str)) -> Result<Option<VenueOrder>, VenueError> {
        let endpoint = "/api/v3/order";
        let params = [("symbol", symbol.to_string()), (key, id.to_string())];
        let (status, body) = self.signed(reqwest::Method::GET, endpoint, &params).await?;
        if (200..300).contains(&status) {
            return order_from_wire(endpoint, &body, json(VENUE, endpoint, &body)?).map(Some);
        }
        match failure(endpoint, status, &body) {
            // -2013: "Order does not exist."
            VenueError::Rejected { code: Some(VenueCode::Number(-2013)), .. } => Ok(None),
            other => Err(other),
        }
    }

    /// Rounds the order to the filters and checks it against them, so an
    /// order the venue would refuse is refused here with the reason. Returns
    /// the quantity and the type with its prices rounded. `PRICE_FILTER`
    /// applies to a stop price as to a price. A stop (`STOP_LOSS`) trades
    /// as a market order once triggered: its quantity meets the market lot
    /// rules and its value is checked, as a market order's, at its stop.
    async fn prepare(&self, order: &OrderRequest, filters: &SymbolFilters) -> Result<(Decimal, OrderType), VenueError> {
        let (qty, limit) = filters.round(order.side, order.qty, order.order_type.limit_price());
        let stop = order.order_type.stop_price().map(|s| filters.round_price(order.side, s));
        let market_price = match (limit, stop) {
            (None, Some(stop)) => Some(stop),
            (None, None) if filters.needs_market_price() => Some(self.average_price(&order.symbol).await?),
            _ => None,
        };
        let refused = |reason| refuse(format!("{} {}: {reason}", order.qty, order.symbol));
        if let Some(stop) = stop {
            filters.check_price("stop price", stop).map_err(refused)?;
        }
        filters.check(qty, limit, market_price).map_err(refused)?;
        Ok((qty, OrderType::from_prices(limit, stop)))
    }

    async fn place(&self, order: &OrderRequest, qty: Decimal, order_type: OrderType) -> Result<VenueOrder, VenueError> {
        let endpoint = "/api/v3/order";
        let side = match order.side {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        };
        let kind = match order_type {
            OrderType::Market => "MARKET",
            OrderType::Limit { .. } => "LIMIT",
            OrderType::Stop { .. } => "STOP_LOSS",
            OrderType::StopLimit { .. } => "STOP_LOSS_LIMIT",
        };
        let mut params = vec![
            ("symbol", order.symbol.clone()),
            ("side", side.to_string()),
            ("type", kind.to_string()),
            ("quantity", qty.to_string()),
        ];
        if let Some(price) = order_type.limit_price() {
            let tif = match order.time_in_force {
                TimeInForce::Ioc => "IOC",
                TimeInForce::Fok => "FOK",
                TimeInForce::Day | TimeInForce::Gtc => "GTC",
            };
            params.push(("timeInForce", tif.to_string()));
            params.push(("price", price.to_string()));
        }
        if let Some(stop) = order_type.stop_price() {
            params.push(("stopPrice", stop.to_string()));
        }
        params.push(("newClientOrderId", order.client_order_id.clone()));
        params.push(("newOrderRespType", "RESULT".into()));
        let (status, body) = self.signed(reqwest::Method::POST, endpoint, &params).await?;
        if !(200..300).contains(&status) {
            return Err(failure(endpoint, status, &body));
        }
        order_from_wire(endpoint, &body, json(VENUE, endpoint, &body)?)
    }
}

#[async_trait::async_trait]
impl Broker for BinanceBroker {
    fn venue(&self) -> &'static str {
        VENUE
    }

    /// Rounds and checks the order against the symbol's filters, then
    /// sends it. A filter failure at the venue (-1013) means the filters
    /// changed: they are fetched again and, if they differ, the order is
    /// prepared and sent once more (a refused order does not exist, so its
    /// client order id is free).
    async fn submit(&self, order: &OrderRequest) -> Result<VenueOrder, VenueError> {
        let filters = self.filters(&order.symbol).await?;
        let (qty, order_type) = self.prepare(order, &filters).await?;
        match self.place(order, qty, order_type).await {
            Err(refused @ VenueError::Rejected { code: Some(VenueCode::Number(-1013)), .. }) => {
                self.forget_filters(&order.symbol).await;
                let fresh = self.filters(&order.symbol).await?;
                if fresh == filters {
                    return Err(refused);
                }
                let (qty, order_type) = self.prepare(order, &fresh).await?;
                self.place(order, qty, order_type).await
            }
            other => other,
        }
    }

    async fn order_by_venue_id(&self, symbol: &str, venue_order_id: &str) -> Result<Option<VenueOrder>, VenueError> {
        self.lookup(symbol, ("orderId", venue_order_id)).await
    }

    async fn order_by_client_id(&self, symbol: &str, client_order_id: &str) -> Result<Option<VenueOrder>, VenueError> {
        self.lookup(symbol, ("origClientOrderId", client_order_id)).await
    }

    async fn cancel(&self, symbol: &str, venue_order_id: &str) -> Result<(), VenueError> {
        let endpoint = "/api/v3/order";
        let params = [("symbol", symbol.to_string()), ("orderId", venue_order_id.to_string())];
        let (status, body) = self.signed(reqwest::Method::DELETE, endpoint, &params).await?;
        if (200..300).contains(&status) { Ok(()) } else { Err(failure(endpoint, status, &body)) }
    }

    async fn open_orders(&self) -> Result<Vec<VenueOrder>, VenueError> {
        let endpoint = "/api/v3/openOrders";
        let (status, body) = self.signed(reqwest::Method::GET, endpoint, &[]).await?;
        if !(200..300).contains(&status) {
            return Err(failure(endpoint, status, &body));
        }
        let wire: Vec<WireOrder> = json(VENUE, endpoint, &body)?;
        wire.into_iter().map(|w| order_from_wire(endpoint, &body, w)).collect()
    }

    /// Spot holdings as positions: each non-quote asset with a balance is a
    /// long position in `{asset}{quote}`. Binance reports no entry price.
    async fn positions(&self) -> Result<Vec<VenuePosition>, VenueError> {
        let endpoint = "/api/v3/account";
        let (status, body) = self.signed(reqwest::Method::GET, endpoint, &[]).await?;
        if !(200..300).contains(&status) {
            return Err(failure(endpoint, status, &body));
        }
        let account: WireAccount = json(VENUE, endpoint, &body)?;
        let mut positions = Vec::new();
        for b in account.balances {
            let total = decimal(endpoint, &body, "free", &b.free)?
                .checked_add(decimal(endpoint, &body, "locked", &b.locked)?)
                .ok_or_else(|| malformed(endpoint, &body, format!("{} balance is out of range", b.asset)))?;
            if b.asset != self.quote_asset && !total.is_zero() {
                positions.push(VenuePosition {
                    symbol: format!("{}{}", b.asset, self.quote_asset),
                    qty: total,
                    avg_price: Decimal::ZERO,
                });
            }
        }
        Ok(positions)
    }

    async fn account(&self) -> Result<VenueAccount, VenueError> {
        let endpoint = "/api/v3/account";
        let (status, body) = self.signed(reqwest::Method::GET, endpoint, &[]).await?;
        if !(200..300).contains(&status) {
            return Err(failure(endpoint, status, &body));
        }
        let account: WireAccount = json(VENUE, endpoint, &body)?;
        let quote = account.balances.iter().find(|b| b.asset == self.quote_asset);
        let cash = match quote {
            Some(b) => decimal(endpoint, &body, "free", &b.free)?,
            None => Decimal::ZERO,
        };
        Ok(VenueAccount { cash, buying_power: cash })
    }
}

/// Signs `payload` (a query string) with `secret`.
pub fn sign(secret: &str, payload: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!("any key length"));
    mac.update(payload.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_refusals() {
        let body = |code: i64| format!(r#"{{"code": {code}, "msg": "m"}}"#).into_bytes();
        assert!(matches!(failure("/o", 400, &body(-1021)), VenueError::Transient { .. }), "-1021 is not final");
        assert!(failure("/o", 400, &body(-1021)).is_retryable());
        for code in [-1022, -2014, -2015] {
            assert!(matches!(failure("/o", 400, &body(code)), VenueError::Unauthorized { .. }), "{code}");
        }
        assert!(matches!(failure("/o", 401, b"{}"), VenueError::Unauthorized { status: 401, .. }));
        let refused = failure("/o", 400, &body(-2010));
        assert!(matches!(refused, VenueError::Rejected { code: Some(VenueCode::Number(-2010)), .. }), "{refused}");
        assert!(matches!(failure("/o", 503, b""), VenueError::Unknown { .. }));
    }

    #[test]
    fn matches_the_published_vector() {
        let secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
        let payload = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
        assert_eq!(sign(secret, payload), "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71");
    }

    #[test]
    fn any_change_changes_the_signature() {
        let secret = "s";
        assert_ne!(sign(secret, "a=1"), sign(secret, "a=2"));
        assert_ne!(sign("t", "a=1"), sign(secret, "a=1"));
        assert_eq!(sign(secret, "a=1").len(), 64);
    }
}
