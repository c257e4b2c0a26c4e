//! Kalshi's trading API (`/trade-api/v2/portfolio/...`).
//!
//! Requests carry `KALSHI-ACCESS-KEY`, `KALSHI-ACCESS-TIMESTAMP` (ms) and
//! `KALSHI-ACCESS-SIGNATURE`: base64 RSA-PSS-SHA256 (salt as long as the
//! digest) over `timestamp + METHOD + path`, the path without its query.
//! Orders buy or sell YES contracts: a host quantity is a whole contract
//! count and a limit price in dollars becomes `yes_price` in cents.

use base64::Engine as _;
use rsa::RsaPrivateKey;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::pss::BlindedSigningKey;
use rsa::signature::{RandomizedSigner, SignatureEncoding};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::Deserialize;
use sha2::Sha256;

use super::{Broker, OrderRequest, OrderStatus, VenueAccount, VenueOrder, VenuePosition};
use crate::order::{OrderType, Side};
use crate::venue::{VenueError, excerpt, json, required, send};

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
}

#[derive(Deserialize)]
struct WireOrder {
    order_id: String,
    #[serde(default)]
    client_order_id: String,
    ticker: String,
    action: String,
    status: String,
    #[serde(default)]
    count: Option<i64>,
    #[serde(default)]
    fill_count: Option<i64>,
    #[serde(default)]
    remaining_count: Option<i64>,
    #[serde(default)]
    yes_price: Option<i64>,
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

#[derive(Deserialize)]
struct WirePosition {
    ticker: String,
    position: i64,
}

#[derive(Deserialize)]
struct PositionsAnswer {
    market_positions: Vec<WirePosition>,
}

#[derive(Deserialize)]
struct BalanceAnswer {
    balance: i64,
}

fn failure(endpoint: &str, status: u16, body: &[u8]) -> VenueError {
    if status >= 500 {
        return VenueError::Unknown {
            venue: VENUE,
            endpoint: endpoint.into(),
            message: format!("HTTP {status}: {}", excerpt(body)),
        };
    }
    let wire: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let message = wire
        .as_ref()
        .and_then(|w| w["error"]["message"].as_str().or(w["message"].as_str()).map(str::to_string))
        .unwrap_or_else(|| excerpt(body));
    VenueError::Rejected { venue: VENUE, endpoint: endpoint.into(), status, code: None, message }
}

fn order_from_wire(w: WireOrder) -> VenueOrder {
    let filled = w.fill_count.unwrap_or(0);
    let count = w.count.unwrap_or(filled + w.remaining_count.unwrap_or(0));
    let status = match w.status.as_str() {
        "executed" => OrderStatus::Filled,
        "canceled" if filled > 0 => OrderStatus::PartiallyFilled,
        "canceled" => OrderStatus::Canceled,
        _ if filled > 0 => OrderStatus::PartiallyFilled,
        _ => OrderStatus::Accepted,
    };
    VenueOrder {
        venue_order_id: w.order_id,
        client_order_id: w.client_order_id,
        symbol: w.ticker,
        side: if w.action == "sell" { Side::Sell } else { Side::Buy },
        qty: Decimal::from(count),
        filled_qty: Decimal::from(filled),
        filled_avg_price: (filled > 0).then(|| Decimal::new(w.yes_price.unwrap_or(0), 2)),
        status,
    }
}

impl KalshiBroker {
    pub fn new(client: reqwest::Client, base_url: &str, credentials: KalshiCredentials) -> Self {
        Self { client, base_url: base_url.trim_end_matches('/').to_string(), credentials }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
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
        if let Some(body) = body {
            request = request.json(&body);
        }
        send(VENUE, path.split('?').next().unwrap_or(path), request).await
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
        if let OrderType::Limit { price } = order.order_type {
            let cents = (price * Decimal::ONE_HUNDRED).round_dp(0);
            let cents = i64::try_from(cents.mantissa())
                .ok()
                .filter(|c| (1..=99).contains(c))
                .ok_or_else(|| refuse(format!("limit price {price} is outside $0.01–$0.99")))?;
            payload["type"] = "limit".into();
            payload["yes_price"] = cents.into();
        }
        let (status, body) = self.call(reqwest::Method::POST, path, Some(payload)).await?;
        if !(200..300).contains(&status) {
            return Err(failure(path, status, &body));
        }
        Ok(order_from_wire(json::<OrderAnswer>(VENUE, path, &body)?.order))
    }

    async fn order_by_client_id(&self, symbol: &str, client_order_id: &str) -> Result<Option<VenueOrder>, VenueError> {
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let mut path = format!("/trade-api/v2/portfolio/orders?ticker={symbol}&limit=200");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (status, body) = self.call(reqwest::Method::GET, &path, None).await?;
            if !(200..300).contains(&status) {
                return Err(failure("/trade-api/v2/portfolio/orders", status, &body));
            }
            let page: OrdersAnswer = json(VENUE, "/trade-api/v2/portfolio/orders", &body)?;
            if let Some(found) = page.orders.into_iter().find(|o| o.client_order_id == client_order_id) {
                return Ok(Some(order_from_wire(found)));
            }
            match page.cursor.filter(|c| !c.is_empty()) {
                Some(next) => cursor = Some(next),
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    async fn cancel(&self, _symbol: &str, venue_order_id: &str) -> Result<(), VenueError> {
        let path = format!("/trade-api/v2/portfolio/orders/{venue_order_id}");
        let (status, body) = self.call(reqwest::Method::DELETE, &path, None).await?;
        if (200..300).contains(&status) { Ok(()) } else { Err(failure(&path, status, &body)) }
    }

    async fn open_orders(&self) -> Result<Vec<VenueOrder>, VenueError> {
        let path = "/trade-api/v2/portfolio/orders?status=resting";
        let (status, body) = self.call(reqwest::Method::GET, path, None).await?;
        if !(200..300).contains(&status) {
            return Err(failure(path, status, &body));
        }
        Ok(json::<OrdersAnswer>(VENUE, path, &body)?.orders.into_iter().map(order_from_wire).collect())
    }

    /// YES contracts held are positive, NO contracts negative.
    async fn positions(&self) -> Result<Vec<VenuePosition>, VenueError> {
        let path = "/trade-api/v2/portfolio/positions";
        let (status, body) = self.call(reqwest::Method::GET, path, None).await?;
        if !(200..300).contains(&status) {
            return Err(failure(path, status, &body));
        }
        let answer: PositionsAnswer = json(VENUE, path, &body)?;
        Ok(answer
            .market_positions
            .into_iter()
            .filter(|p| p.position != 0)
            .map(|p| VenuePosition { symbol: p.ticker, qty: Decimal::from(p.position), avg_price: Decimal::ZERO })
            .collect())
    }

    async fn account(&self) -> Result<VenueAccount, VenueError> {
        let path = "/trade-api/v2/portfolio/balance";
        let (status, body) = self.call(reqwest::Method::GET, path, None).await?;
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
            fill_count: Some(fill),
            remaining_count: Some(5 - fill),
            yes_price: Some(45),
        };
        assert_eq!(order_from_wire(wire("resting", 0)).status, OrderStatus::Accepted);
        assert_eq!(order_from_wire(wire("resting", 2)).status, OrderStatus::PartiallyFilled);
        let done = order_from_wire(wire("executed", 5));
        assert_eq!((done.status, done.filled_avg_price), (OrderStatus::Filled, Some(Decimal::new(45, 2))));
    }
}
