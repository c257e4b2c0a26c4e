//! Kalshi's trading API (`/trade-api/v2/portfolio/...`).
//!
//! Requests carry `KALSHI-ACCESS-KEY`, `KALSHI-ACCESS-TIMESTAMP` (ms) and
//! `KALSHI-ACCESS-SIGNATURE`: base64 RSA-PSS-SHA256 (salt as long as the
//! digest) over `timestamp + METHOD + path`, the path without its query.
//! Orders buy or sell YES contracts: a host quantity is a whole contract
//! count and a limit price in dollars becomes `yes_price` in cents; Kalshi
//! has no stop orders, so they are refused before sending. What a
//! fill cost is read from the order's fill-cost fields, and every list is
//! read page by page through its `cursor`.

use base64::Engine as _;
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::pss::BlindedSigningKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Deserialize;
use sha2::Sha256;

use crate::broker::{Broker, OrderRequest, OrderStatus, VenueAccount, VenueOrder, VenuePosition};
use crate::order::{OrderType, Side};
use crate::venue::{ErrorBody, Means, VenueCode, VenueError, json, path_segment, required, send};

const VENUE: &str = "kalshi";

/// A Kalshi API key: its id and the RSA private key that signs requests.
#[derive(Clone)]
pub struct KalshiCredentials {
    pub key_id: String,
    signing_key: BlindedSigningKey<Sha256>,
}

impl KalshiCredentials {
    /// Reads `KALSHI_API_KEY_ID` and the PEM file named by `KALSHI_PRIVATE_KEY_PATH`.
    pub fn from_env() -> Result<Self, VenueError> {
        let key_id = required("KALSHI_API_KEY_ID", |v| std::env::var(v).ok())?;
        let path = required("KALSHI_PRIVATE_KEY_PATH", |v| std::env::var(v).ok())?;
        let pem = std::fs::read_to_string(&path).map_err(|e| VenueError::Malformed {
            venue: VENUE,
            endpoint: path.clone(),
            body: String::new(),
            message: format!("cannot read the private key: {e}"),
        })?;
        Self::from_pem(key_id, &pem)
    }

    /// Accepts a PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 PEM key.
    pub fn from_pem(key_id: String, pem: &str) -> Result<Self, VenueError> {
        let key = RsaPrivateKey::from_pkcs1_pem(pem).or_else(|_| RsaPrivateKey::from_pkcs8_pem(pem)).map_err(|e| {
            VenueError::Malformed {
                venue: VENUE,
                endpoint: "private key".into(),
                body: String::new(),
                message: e.to_string(),
            }
        })?;
        Ok(Self::from_key(key_id, key))
    }

    pub fn from_key(key_id: String, key: RsaPrivateKey) -> Self {
        Self { key_id, signing_key: BlindedSigningKey::<Sha256>::new(key) }
    }

    /// The base64 signature of `timestamp + method + path`.
    pub fn sign(&self, timestamp_ms: u64, method: &str, path: &str) -> String {
        let path = path.split('?').next().unwrap_or(path);
        let message = format!("{timestamp_ms}{method}{path}");
        let signature = self.signing_key.sign_with_rng(&mut rsa::rand_core::OsRng, message.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(signature.to_bytes())
    }
}

pub struct KalshiBroker {
    client: reqwest::Client,
    base_url: String,
    credentials: KalshiCredentials,
    /// Most pages read from one paged list before giving up with an error.
    max_pages: usize,
}

#[derive(Deserialize)]
struct WireOrder {
    order_id: String,
    #[serde(default)]
    client_order_id: String,
    ticker: String,
    action: String,
    status: String,
    /// Contract counts: integers (legacy) or fixed-point strings (`_fp`);
    /// when both come they must agree.
    #[serde(default)]
    count: Option<i64>,
    #[serde(default)]
    initial_count: Option<i64>,
    #[serde(default)]
    initial_count_fp: Option<String>,
    #[serde(default)]
    fill_count: Option<i64>,
    #[serde(default)]
    fill_count_fp: Option<String>,
    #[serde(default)]
    remaining_count: Option<i64>,
    #[serde(default)]
    remaining_count_fp: Option<String>,
    /// What the taker and maker fills cost in total, in cents and as
    /// dollar strings: the only execution price an order reports.
    #[serde(default)]
    taker_fill_cost: Option<i64>,
    #[serde(default)]
    maker_fill_cost: Option<i64>,
    #[serde(default)]
    taker_fill_cost_dollars: Option<String>,
    #[serde(default)]
    maker_fill_cost_dollars: Option<String>,
}

#[derive(Deserialize)]
struct OrderAnswer {
    order: WireOrder,
}

#[derive(Deserialize)]
struct OrdersAnswer {
    orders: Vec<WireOrder>,
    #[serde(default)]
    cursor: Option<String>,
}

/// Most pages read from one paged list by default.
pub const MAX_PAGES: usize = 1000;
/// Items asked for per page of orders and positions.
const PAGE_LIMIT: usize = 200;

#[derive(Deserialize)]
struct WirePosition {
    ticker: String,
    #[serde(default)]
    position: Option<i64>,
    #[serde(default)]
    position_fp: Option<String>,
}

#[derive(Deserialize)]
struct PositionsAnswer {
    market_positions: Vec<WirePosition>,
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Deserialize)]
struct BalanceAnswer {
    balance: i64,
}

/// Maps a non-2XX answer (see [`crate::venue::failure`]): errors are
/// `{"error": {"code", "message"}}` with a symbolic code, kept as
/// [`VenueCode::Name`].
fn failure(endpoint: &str, status: u16, body: &[u8]) -> VenueError {
    crate::venue::failure(VENUE, endpoint, status, body, error_body)
}

/// What a Kalshi error body says (orders and market data alike); 403, like
/// 401, is the key or its signature refused.
pub(crate) fn error_body(status: u16, body: &[u8]) -> ErrorBody {
    let wire: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let text = |key: &str| wire.as_ref().and_then(|w| w["error"][key].as_str().or(w[key].as_str())).map(str::to_string);
    let means = (status == 403).then_some(Means::Unauthorized);
    ErrorBody { code: text("code").map(VenueCode::name), message: text("message"), means }
}

fn malformed(endpoint: &str, message: String) -> VenueError {
    VenueError::Malformed { venue: VENUE, endpoint: endpoint.into(), body: String::new(), message }
}

/// The average price of an order's fills, in dollars per contract: its
/// taker and maker fill costs over the filled count. A dollar string wins
/// over the cents field it stands beside. `None` when nothing filled or the
/// venue reported no cost; an order's `yes_price` is a limit (or a market
/// order's cap), never what it paid.
fn average_fill_price(endpoint: &str, w: &WireOrder, filled: Decimal) -> Result<Option<Decimal>, VenueError> {
    if filled <= Decimal::ZERO {
        return Ok(None);
    }
    let part = |dollars: &Option<String>, cents: Option<i64>, what: &str| -> Result<Option<Decimal>, VenueError> {
        match (dollars, cents) {
            (Some(text), _) => <Decimal as std::str::FromStr>::from_str(text)
                .map(Some)
                .map_err(|_| malformed(endpoint, format!("{what}_dollars `{text}` is not a decimal"))),
            (None, Some(cents)) => Ok(Some(Decimal::new(cents, 2))),
            (None, None) => Ok(None),
        }
    };
    let taker = part(&w.taker_fill_cost_dollars, w.taker_fill_cost, "taker_fill_cost")?;
    let maker = part(&w.maker_fill_cost_dollars, w.maker_fill_cost, "maker_fill_cost")?;
    if taker.is_none() && maker.is_none() {
        return Ok(None);
    }
    let cost = taker
        .unwrap_or_default()
        .checked_add(maker.unwrap_or_default())
        .ok_or_else(|| malformed(endpoint, "fill cost is out of range".into()))?;
    if cost.is_sign_negative() {
        return Err(malformed(endpoint, format!("fill cost {cost} is negative")));
    }
    cost.checked_div(filled)
        .map(Some)
        .ok_or_else(|| malformed(endpoint, format!("{cost} over {filled} is out of range")))
}

/// A contract count given as a legacy integer, a fixed-point string, or
/// both (which must agree).
fn contracts(endpoint: &str, what: &str, int: Option<i64>, fp: Option<&str>) -> Result<Option<Decimal>, VenueError> {
    let fp = fp
        .map(|text| {
            <Decimal as std::str::FromStr>::from_str(text)
                .map_err(|_| malformed(endpoint, format!("{what}_fp `{text}` is not a decimal")))
        })
        .transpose()?;
    let value = match (fp, int) {
        (Some(fp), Some(int)) if fp != Decimal::from(int) => {
            return Err(malformed(endpoint, format!("{what} {int} and {what}_fp {fp} disagree")));
        }
        (Some(fp), _) => Some(fp.normalize()),
        (None, int) => int.map(Decimal::from),
    };
    Ok(value)
}

fn order_from_wire(endpoint: &str, w: WireOrder) -> Result<VenueOrder, VenueError> {
    let filled = contracts(endpoint, "fill_count", w.fill_count, w.fill_count_fp.as_deref())?.unwrap_or_default();
    let remaining = contracts(endpoint, "remaining_count", w.remaining_count, w.remaining_count_fp.as_deref())?;
    let initial = contracts(endpoint, "initial_count", w.initial_count, w.initial_count_fp.as_deref())?;
    let count = match (initial, w.count) {
        (Some(initial), _) => initial,
        (None, Some(count)) => contracts(endpoint, "count", Some(count), None)?.unwrap_or_default(),
        (None, None) => filled
            .checked_add(remaining.unwrap_or_default())
            .ok_or_else(|| malformed(endpoint, "contract counts are out of range".into()))?,
    };
    if filled < Decimal::ZERO || count < Decimal::ZERO || remaining.is_some_and(|r| r < Decimal::ZERO) {
        return Err(malformed(endpoint, format!("order {} has negative counts", w.order_id)));
    }
    let filled_any = filled > Decimal::ZERO;
    let status = match w.status.as_str() {
        "executed" => OrderStatus::Filled,
        "canceled" if filled_any => OrderStatus::PartiallyFilled,
        "canceled" => OrderStatus::Canceled,
        _ if filled_any => OrderStatus::PartiallyFilled,
        _ => OrderStatus::Accepted,
    };
    let filled_avg_price = average_fill_price(endpoint, &w, filled)?;
    Ok(VenueOrder {
        venue_order_id: w.order_id,
        client_order_id: w.client_order_id,
        symbol: w.ticker,
        side: if w.action == "sell" { Side::Sell } else { Side::Buy },
        qty: count,
        filled_qty: filled,
        filled_avg_price,
        status,
    })
}

impl KalshiBroker {
    pub fn new(client: reqwest::Client, base_url: &str, credentials: KalshiCredentials) -> Self {
        Self { client, base_url: base_url.trim_end_matches('/').to_string(), credentials, max_pages: MAX_PAGES }
    }

    /// Sets how many pages of one list are read before giving up with an
    /// error (default [`MAX_PAGES`]).
    pub fn with_max_pages(mut self, pages: usize) -> Self {
        self.max_pages = pages.max(1);
        self
    }

    /// Sends a signed request for `path` (the signature covers the path,
    /// not the query).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
    ) -> Result<(u16, Vec<u8>), VenueError> {
        let timestamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let signature = self.credentials.sign(timestamp, method.as_str(), path);
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base_url))
            .header("KALSHI-ACCESS-KEY", &self.credentials.key_id)
            .header("KALSHI-ACCESS-TIMESTAMP", timestamp.to_string())
            .header("KALSHI-ACCESS-SIGNATURE", signature);
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        send(VENUE, path, request).await
    }

    /// Reads the list at `path` (filtered by `filter`) page by page,
    /// following `cursor` until the venue returns none, and hands each page
    /// to `each`; it returns `true` to stop early. Past the page limit it
    /// fails rather than return a part.
    async fn paged<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        filter: &[(&str, String)],
        cursor_of: impl Fn(&T) -> Option<String>,
        mut each: impl FnMut(T) -> Result<bool, VenueError>,
    ) -> Result<(), VenueError> {
        let mut cursor: Option<String> = None;
        for _ in 0..self.max_pages {
            let mut query = filter.to_vec();
            query.push(("limit", PAGE_LIMIT.to_string()));
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            let (status, body) = self.call(reqwest::Method::GET, path, &query, None).await?;
            if !(200..300).contains(&status) {
                return Err(failure(path, status, &body));
            }
            let page: T = json(VENUE, path, &body)?;
            let next = cursor_of(&page).filter(|c| !c.is_empty());
            if each(page)? {
                return Ok(());
            }
            match next {
                Some(next) if cursor.as_ref() != Some(&next) => cursor = Some(next),
                Some(_) => return Err(malformed(path, "the venue repeated a page cursor".into())),
                None => return Ok(()),
            }
        }
        Err(VenueError::Unknown {
            venue: VENUE,
            endpoint: path.into(),
            message: format!("gave up after {} pages; the list was not read to its end", self.max_pages),
        })
    }

    /// The order with this venue order id (`GET /portfolio/orders/{order_id}`).
    pub async fn order_by_id(&self, venue_order_id: &str) -> Result<Option<VenueOrder>, VenueError> {
        let path = format!("/trade-api/v2/portfolio/orders/{}", path_segment(venue_order_id));
        let (status, body) = self.call(reqwest::Method::GET, &path, &[], None).await?;
        match status {
            404 => Ok(None),
            200..=299 => order_from_wire(&path, json::<OrderAnswer>(VENUE, &path, &body)?.order).map(Some),
            _ => Err(failure(&path, status, &body)),
        }
    }
}

#[async_trait::async_trait]
impl Broker for KalshiBroker {
    fn venue(&self) -> &'static str {
        VENUE
    }

    async fn submit(&self, order: &OrderRequest) -> Result<VenueOrder, VenueError> {
        let path = "/trade-api/v2/portfolio/orders";
        let count = order.qty.round_dp_with_strategy(0, RoundingStrategy::ToZero);
        let refuse = |message: String| VenueError::Rejected {
            venue: VENUE,
            endpoint: path.into(),
            status: 400,
            code: None,
            message,
        };
        let limit = match order.order_type {
            OrderType::Market => None,
            OrderType::Limit { price } => Some(price),
            OrderType::Stop { .. } | OrderType::StopLimit { .. } => {
                let kind = order.order_type.name();
                return Err(refuse(format!("Kalshi has no stop orders: a {kind} order is refused before sending")));
            }
        };
        let count = i64::try_from(count.mantissa())
            .ok()
            .filter(|c| *c >= 1)
            .ok_or_else(|| refuse(format!("{} is not a whole number of contracts", order.qty)))?;
        let mut payload = serde_json::json!({
            "ticker": order.symbol,
            "side": "yes",
            "action": match order.side { Side::Buy => "buy", Side::Sell => "sell" },
            "count": count,
            "type": "market",
            "client_order_id": order.client_order_id,
        });
        if let Some(price) = limit {
            let cents = (price * Decimal::ONE_HUNDRED).round_dp(0);
            let cents = i64::try_from(cents.mantissa())
                .ok()
                .filter(|c| (1..=99).contains(c))
                .ok_or_else(|| refuse(format!("limit price {price} is outside $0.01–$0.99")))?;
            payload["type"] = "limit".into();
            payload["yes_price"] = cents.into();
        }
        let (status, body) = self.call(reqwest::Method::POST, path, &[], Some(payload)).await?;
        if !(200..300).contains(&status) {
            return Err(failure(path, status, &body));
        }
        order_from_wire(path, json::<OrderAnswer>(VENUE, path, &body)?.order)
    }

    /// Scans the ticker's orders, every page. Kalshi cannot look an order
    /// up by client order id; prefer [`Broker::order_by_venue_id`] when the
    /// venue's id is known. A scan that cannot finish is an error, never
    /// "not found", which would let a caller give up on a live order.
    async fn order_by_client_id(&self, symbol: &str, client_order_id: &str) -> Result<Option<VenueOrder>, VenueError> {
        let mut found = None;
        self.paged(
            "/trade-api/v2/portfolio/orders",
            &[("ticker", symbol.to_string())],
            |page: &OrdersAnswer| page.cursor.clone(),
            |page| {
                found = page.orders.into_iter().find(|o| o.client_order_id == client_order_id);
                Ok(found.is_some())
            },
        )
        .await?;
        found.map(|o| order_from_wire("/trade-api/v2/portfolio/orders", o)).transpose()
    }

    async fn order_by_venue_id(&self, _symbol: &str, venue_order_id: &str) -> Result<Option<VenueOrder>, VenueError> {
        self.order_by_id(venue_order_id).await
    }

    async fn cancel(&self, _symbol: &str, venue_order_id: &str) -> Result<(), VenueError> {
        let path = format!("/trade-api/v2/portfolio/orders/{}", path_segment(venue_order_id));
        let (status, body) = self.call(reqwest::Method::DELETE, &path, &[], None).await?;
        if (200..300).contains(&status) { Ok(()) } else { Err(failure(&path, status, &body)) }
    }

    async fn open_orders(&self) -> Result<Vec<VenueOrder>, VenueError> {
        let mut orders = Vec::new();
        self.paged(
            "/trade-api/v2/portfolio/orders",
            &[("status", "resting".to_string())],
            |page: &OrdersAnswer| page.cursor.clone(),
            |page| {
                for o in page.orders {
                    orders.push(order_from_wire("/trade-api/v2/portfolio/orders", o)?);
                }
                Ok(false)
            },
        )
        .await?;
        Ok(orders)
    }

    /// YES contracts held are positive, NO contracts negative.
    async fn positions(&self) -> Result<Vec<VenuePosition>, VenueError> {
        let mut positions = Vec::new();
        self.paged(
            "/trade-api/v2/portfolio/positions",
            &[],
            |page: &PositionsAnswer| page.cursor.clone(),
            |page| {
                for p in page.market_positions {
                    let endpoint = "/trade-api/v2/portfolio/positions";
                    let qty =
                        contracts(endpoint, "position", p.position, p.position_fp.as_deref())?.unwrap_or_default();
                    if !qty.is_zero() {
                        positions.push(VenuePosition { symbol: p.ticker, qty, avg_price: Decimal::ZERO });
                    }
                }
                Ok(false)
            },
        )
        .await?;
        Ok(positions)
    }

    async fn account(&self) -> Result<VenueAccount, VenueError> {
        let path = "/trade-api/v2/portfolio/balance";
        let (status, body) = self.call(reqwest::Method::GET, path, &[], None).await?;
        if !(200..300).contains(&status) {
            return Err(failure(path, status, &body));
        }
        let cash = Decimal::new(json::<BalanceAnswer>(VENUE, path, &body)?.balance, 2);
        Ok(VenueAccount { cash, buying_power: cash })
    }
}

#[cfg(test)]
mod tests {
    use rsa::pss::VerifyingKey;
    use rsa::signature::Verifier;

    use super::*;

    #[test]
    fn signs_timestamp_method_and_path_without_the_query() {
        let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let public = key.to_public_key();
        let credentials = KalshiCredentials::from_key("key-1".into(), key);
        let signature = credentials.sign(1_703_123_456_789, "POST", "/trade-api/v2/portfolio/orders?ignored=1");
        let bytes = base64::engine::general_purpose::STANDARD.decode(signature).unwrap();
        let signature = rsa::pss::Signature::try_from(bytes.as_slice()).unwrap();
        let verifier = VerifyingKey::<Sha256>::new(public);
        verifier.verify(b"1703123456789POST/trade-api/v2/portfolio/orders", &signature).unwrap();
        assert!(verifier.verify(b"1703123456789GET/trade-api/v2/portfolio/orders", &signature).is_err());
    }

    #[test]
    fn refuses_a_key_that_is_not_pem() {
        assert!(KalshiCredentials::from_pem("k".into(), "-----BEGIN NONSENSE-----").is_err());
    }

    #[test]
    fn maps_order_states() {
        let wire = |status: &str, fill: i64| WireOrder {
            order_id: "o".into(),
            client_order_id: "c".into(),
            ticker: "T".into(),
            action: "buy".into(),
            status: status.into(),
            count: Some(5),
            initial_count: None,
            initial_count_fp: None,
            fill_count: Some(fill),
            fill_count_fp: None,
            remaining_count: Some(5 - fill),
            remaining_count_fp: None,
            taker_fill_cost: Some(fill * 20),
            maker_fill_cost: Some(fill * 25),
            taker_fill_cost_dollars: None,
            maker_fill_cost_dollars: None,
        };
        let map = |w| order_from_wire("/o", w).unwrap();
        assert_eq!(map(wire("resting", 0)).status, OrderStatus::Accepted);
        assert_eq!(map(wire("resting", 2)).status, OrderStatus::PartiallyFilled);
        let done = map(wire("executed", 5));
        assert_eq!((done.status, done.filled_avg_price), (OrderStatus::Filled, Some(Decimal::new(45, 2))));
        let mut dollars = wire("executed", 4);
        dollars.taker_fill_cost_dollars = Some("1.3000".into());
        dollars.maker_fill_cost = None;
        assert_eq!(map(dollars).filled_avg_price, Some("0.325".parse().unwrap()), "dollars win over cents");
        let mut bad = wire("executed", 1);
        bad.maker_fill_cost_dollars = Some("lots".into());
        assert!(order_from_wire("/o", bad).is_err());
        // Newer answers give counts only as fixed-point strings.
        let mut fp = wire("resting", 0);
        (fp.count, fp.fill_count, fp.remaining_count) = (None, None, None);
        (fp.initial_count_fp, fp.fill_count_fp, fp.remaining_count_fp) =
            (Some("5.00".into()), Some("2.00".into()), Some("3.00".into()));
        (fp.taker_fill_cost_dollars, fp.maker_fill_cost) = (Some("0.9000".into()), None);
        let fp = map(fp);
        assert_eq!(
            (fp.qty, fp.filled_qty, fp.status),
            (Decimal::from(5), Decimal::from(2), OrderStatus::PartiallyFilled)
        );
        assert_eq!(fp.filled_avg_price, Some("0.45".parse().unwrap()));
        let mut disagree = wire("resting", 2);
        disagree.fill_count_fp = Some("3.00".into());
        assert!(order_from_wire("/o", disagree).is_err(), "legacy and fixed-point counts must agree");
    }
}
