//! Binance spot trading (`/api/v3/order`, `/api/v3/openOrders`, `/api/v3/account`).
//!
//! SIGNED endpoints take a `signature` parameter: the lowercase hex
//! HMAC-SHA256, keyed with the API secret, of the exact query string (with
//! `timestamp` and `recvWindow` in it), plus the key in `X-MBX-APIKEY`.
//! Errors are `{"code", "msg"}`; a 5XX means the outcome is unknown.
//! Quantities and prices are rounded to the symbol's `LOT_SIZE` step and
//! `PRICE_FILTER` tick from `exchangeInfo`, fetched once per symbol.

use std::collections::HashMap;

use hmac::{Hmac, Mac};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Deserialize;
use sha2::Sha256;

use super::{Broker, OrderRequest, OrderStatus, VenueAccount, VenueOrder, VenuePosition};
use crate::order::{OrderType, Side, TimeInForce};
use crate::venue::{VenueError, excerpt, json, required, send};

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

/// A symbol's increments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Increments {
    pub tick_size: Decimal,
    pub step_size: Decimal,
}

impl Increments {
    /// Rounds a quantity down to the step, and a limit price to the tick in
    /// the direction that never worsens it (buys down, sells up).
    pub fn round(&self, side: Side, qty: Decimal, price: Option<Decimal>) -> (Decimal, Option<Decimal>) {
        let floor = |v: Decimal, step: Decimal, strategy| {
            if step.is_zero() { v } else { ((v / step).round_dp_with_strategy(0, strategy) * step).normalize() }
        };
        let qty = floor(qty, self.step_size, RoundingStrategy::ToZero);
        let strategy = match side {
            Side::Buy => RoundingStrategy::ToNegativeInfinity,
            Side::Sell => RoundingStrategy::ToPositiveInfinity,
        };
        (qty, price.map(|p| floor(p, self.tick_size, strategy)))
    }
}

pub struct BinanceBroker {
    client: reqwest::Client,
    base_url: String,
    credentials: BinanceCredentials,
    /// The quote asset whose balance is cash, e.g. `USDT`.
    quote_asset: String,
    increments: tokio::sync::Mutex<HashMap<String, Increments>>,
    /// Time source for `timestamp`; tests fix it.
    now: fn() -> u64,
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

fn failure(endpoint: &str, status: u16, body: &[u8]) -> VenueError {
    if status >= 500 {
        return VenueError::Unknown {
            venue: VENUE,
            endpoint: endpoint.into(),
            message: format!("HTTP {status}: {}", excerpt(body)),
        };
    }
    let wire: Option<WireError> = serde_json::from_slice(body).ok();
    let message = wire.as_ref().and_then(|w| w.msg.clone()).unwrap_or_else(|| excerpt(body));
    VenueError::Rejected { venue: VENUE, endpoint: endpoint.into(), status, code: wire.and_then(|w| w.code), message }
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
        filled_avg_price: (!filled.is_zero()).then(|| quote / filled),
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
            increments: tokio::sync::Mutex::new(HashMap::new()),
            now: system_ms,
        }
    }

    /// Signs `params` and sends them as the query string.
    async fn signed(
        &self,
        method: reqwest::Method,
        endpoint: &str,
        params: &[(&str, String)],
    ) -> Result<(u16, Vec<u8>), VenueError> {
        let mut query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", urlencode(v))).collect();
        query.push(format!("recvWindow={RECV_WINDOW}"));
        query.push(format!("timestamp={}", (self.now)()));
        let query = query.join("&");
        let signature = sign(&self.credentials.secret, &query);
        let url = format!("{}{endpoint}?{query}&signature={signature}", self.base_url);
        let request = self.client.request(method, url).header("X-MBX-APIKEY", &self.credentials.api_key);
        send(VENUE, endpoint, request).await
    }

    /// The symbol's increments, fetched from `exchangeInfo` once.
    pub async fn increments(&self, symbol: &str) -> Result<Increments, VenueError> {
        let mut cache = self.increments.lock().await;
        if let Some(found) = cache.get(symbol) {
            return Ok(*found);
        }
        let endpoint = "/api/v3/exchangeInfo";
        let request = self.client.get(format!("{}{endpoint}", self.base_url)).query(&[("symbol", symbol)]);
        let (status, body) = send(VENUE, endpoint, request).await?;
        if !(200..300).contains(&status) {
            return Err(failure(endpoint, status, &body));
        }
        let info: serde_json::Value = json(VENUE, endpoint, &body)?;
        let filters = info["symbols"][0]["filters"]
            .as_array()
            .ok_or_else(|| malformed(endpoint, &body, format!("no filters for {symbol}")))?;
        let field = |kind: &str, key: &str| -> Result<Decimal, VenueError> {
            let text = filters.iter().find(|f| f["filterType"] == kind).and_then(|f| f[key].as_str());
            let text = text.ok_or_else(|| malformed(endpoint, &body, format!("{kind}.{key} missing")))?;
            decimal(endpoint, &body, key, text)
        };
        let found =
            Increments { tick_size: field("PRICE_FILTER", "tickSize")?, step_size: field("LOT_SIZE", "stepSize")? };
        cache.insert(symbol.to_string(), found);
        Ok(found)
    }
}

/// Percent-encodes a query value (Binance signs the encoded form).
fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[async_trait::async_trait]
impl Broker for BinanceBroker {
    fn venue(&self) -> &'static str {
        VENUE
    }

    async fn submit(&self, order: &OrderRequest) -> Result<VenueOrder, VenueError> {
        let endpoint = "/api/v3/order";
        let increments = self.increments(&order.symbol).await?;
        let limit = match order.order_type {
            OrderType::Market => None,
            OrderType::Limit { price } => Some(price),
        };
        let (qty, limit) = increments.round(order.side, order.qty, limit);
        if qty.is_zero() {
            return Err(VenueError::Rejected {
                venue: VENUE,
                endpoint: endpoint.into(),
                status: 400,
                code: None,
                message: format!("quantity {} is below the step size {}", order.qty, increments.step_size),
            });
        }
        let mut params = vec![
            ("symbol", order.symbol.clone()),
            (
                "side",
                match order.side {
                    Side::Buy => "BUY",
                    Side::Sell => "SELL",
                }
                .to_string(),
            ),
            ("type", if limit.is_some() { "LIMIT" } else { "MARKET" }.to_string()),
            ("quantity", qty.to_string()),
        ];
        if let Some(price) = limit {
            let tif = match order.time_in_force {
                TimeInForce::Ioc => "IOC",
                TimeInForce::Fok => "FOK",
                TimeInForce::Day | TimeInForce::Gtc => "GTC",
            };
            params.push(("timeInForce", tif.to_string()));
            params.push(("price", price.to_string()));
        }
        params.push(("newClientOrderId", order.client_order_id.clone()));
        params.push(("newOrderRespType", "RESULT".into()));
        let (status, body) = self.signed(reqwest::Method::POST, endpoint, &params).await?;
        if !(200..300).contains(&status) {
            return Err(failure(endpoint, status, &body));
        }
        order_from_wire(endpoint, &body, json(VENUE, endpoint, &body)?)
    }

    async fn order_by_client_id(&self, symbol: &str, client_order_id: &str) -> Result<Option<VenueOrder>, VenueError> {
        let endpoint = "/api/v3/order";
        let params = [("symbol", symbol.to_string()), ("origClientOrderId", client_order_id.to_string())];
        let (status, body) = self.signed(reqwest::Method::GET, endpoint, &params).await?;
        if (200..300).contains(&status) {
            return order_from_wire(endpoint, &body, json(VENUE, endpoint, &body)?).map(Some);
        }
        match failure(endpoint, status, &body) {
            // -2013: "Order does not exist."
            VenueError::Rejected { code: Some(-2013), .. } => Ok(None),
            other => Err(other),
        }
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
            let total = decimal(endpoint, &body, "free", &b.free)? + decimal(endpoint, &body, "locked", &b.locked)?;
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
    use std::str::FromStr;

    use super::*;

    #[test]
    fn rounds_to_the_symbols_increments() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        let inc = Increments { tick_size: d("0.01"), step_size: d("0.001") };
        assert_eq!(inc.round(Side::Buy, d("1.23456"), Some(d("100.019"))), (d("1.234"), Some(d("100.01"))));
        assert_eq!(inc.round(Side::Sell, d("0.0009"), Some(d("100.011"))), (d("0"), Some(d("100.02"))));
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(urlencode("sb-1f_2.x~"), "sb-1f_2.x~");
        assert_eq!(urlencode("a b&c=d"), "a%20b%26c%3Dd");
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
