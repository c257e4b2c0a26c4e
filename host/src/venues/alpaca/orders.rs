//! Alpaca's trading API (`/v2/orders`, `/v2/positions`, `/v2/account`).
//!
//! Numbers go as strings, prices included: `limit_price` for a limit or a
//! stop-limit order, `stop_price` for a stop or a stop-limit order. Errors
//! are `{"code", "message"}`: 403 means insufficient buying power and 422
//! an invalid order, both final; a 5XX leaves the outcome unknown.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::Deserialize;

use super::AlpacaCredentials;
use crate::broker::{Broker, OrderRequest, OrderStatus, VenueAccount, VenueOrder, VenuePosition};
use crate::order::{Side, TimeInForce};
use crate::venue::{ErrorBody, VenueCode, VenueError, excerpt, json, path_segment, send};

pub(super) const VENUE: &str = "alpaca";

pub struct AlpacaBroker {
    client: reqwest::Client,
    /// e.g. `https://paper-api.alpaca.markets`.
    base_url: String,
    credentials: AlpacaCredentials,
}

#[derive(Deserialize)]
pub(super) struct WireOrder {
    id: String,
    client_order_id: String,
    symbol: String,
    qty: Option<String>,
    filled_qty: Option<String>,
    filled_avg_price: Option<String>,
    side: String,
    status: String,
}

#[derive(Deserialize)]
struct WirePosition {
    symbol: String,
    qty: String,
    avg_entry_price: String,
    side: Option<String>,
}

#[derive(Deserialize)]
struct WireAccount {
    cash: String,
    buying_power: String,
}

#[derive(Deserialize)]
struct WireError {
    code: Option<i64>,
    message: Option<String>,
}

fn malformed(endpoint: &str, body: &[u8], message: String) -> VenueError {
    VenueError::Malformed { venue: VENUE, endpoint: endpoint.into(), body: excerpt(body), message }
}

fn decimal(endpoint: &str, body: &[u8], what: &str, text: &str) -> Result<Decimal, VenueError> {
    crate::venue::decimal(VENUE, endpoint, body, what, text)
}

pub(super) fn order_from_wire(endpoint: &str, body: &[u8], w: WireOrder) -> Result<VenueOrder, VenueError> {
    let side = match w.side.as_str() {
        "buy" => Side::Buy,
        "sell" => Side::Sell,
        other => return Err(malformed(endpoint, body, format!("side `{other}`"))),
    };
    let qty = decimal(endpoint, body, "qty", w.qty.as_deref().unwrap_or("0"))?;
    let filled_qty = decimal(endpoint, body, "filled_qty", w.filled_qty.as_deref().unwrap_or("0"))?;
    let status = status_from_wire(&w.status, qty, filled_qty)
        .ok_or_else(|| malformed(endpoint, body, format!("order status `{}` is not one Alpaca documents", w.status)))?;
    Ok(VenueOrder {
        venue_order_id: w.id,
        client_order_id: w.client_order_id,
        symbol: w.symbol,
        side,
        qty,
        filled_qty,
        filled_avg_price: w
            .filled_avg_price
            .as_deref()
            .map(|p| decimal(endpoint, body, "filled_avg_price", p))
            .transpose()?,
        status,
    })
}

/// Maps each of Alpaca's documented order statuses (`OrderStatus` in the
/// trading spec) to ours; `None` for one it does not document.
///
/// Final: `filled`, `canceled`, `expired`, `rejected`, and `replaced` (this
/// order was superseded by another and takes no more fills, so it ends as
/// canceled). Everything else is still open: `done_for_day` resumes the
/// next trading day, `calculated` is done for the day unless fully filled,
/// and the pending and rare states may still fill.
fn status_from_wire(status: &str, qty: Decimal, filled: Decimal) -> Option<OrderStatus> {
    let open = if filled > Decimal::ZERO { OrderStatus::PartiallyFilled } else { OrderStatus::Accepted };
    Some(match status {
        "filled" => OrderStatus::Filled,
        "canceled" | "replaced" => OrderStatus::Canceled,
        "expired" => OrderStatus::Expired,
        "rejected" => OrderStatus::Rejected,
        "calculated" if filled > Decimal::ZERO && filled >= qty => OrderStatus::Filled,
        "partially_filled" => OrderStatus::PartiallyFilled,
        "new"
        | "accepted"
        | "pending_new"
        | "accepted_for_bidding"
        | "pending_cancel"
        | "pending_replace"
        | "stopped"
        | "suspended"
        | "done_for_day"
        | "calculated" => open,
        _ => return None,
    })
}

/// Maps a non-2XX answer (see [`crate::venue::failure`]): errors are
/// `{"code", "message"}` with a numeric code; 403 on the trading API is
/// insufficient buying power, a refusal like any other 4XX.
fn failure(endpoint: &str, status: u16, body: &[u8]) -> VenueError {
    crate::venue::failure(VENUE, endpoint, status, body, error_body)
}

/// What an Alpaca error body says (trading and market data alike).
pub(crate) fn error_body(_status: u16, body: &[u8]) -> ErrorBody {
    let wire: Option<WireError> = serde_json::from_slice(body).ok();
    let (code, message) = wire.map(|w| (w.code, w.message)).unwrap_or_default();
    ErrorBody { code: code.map(VenueCode::Number), message, means: None }
}

/// Rounds to what Alpaca accepts: quantities to 9 decimals (toward zero),
/// limit prices to cents at or above $1 and to 4 decimals below.
pub fn round_for_alpaca(qty: Decimal, price: Option<Decimal>) -> (Decimal, Option<Decimal>) {
    let qty = qty.round_dp_with_strategy(9, RoundingStrategy::ToZero);
    (qty, price.map(round_price))
}

/// A limit or stop price to cents at or above $1, to 4 decimals below.
fn round_price(price: Decimal) -> Decimal {
    if price >= Decimal::ONE { price.round_dp(2) } else { price.round_dp(4) }
}

impl AlpacaBroker {
    pub fn new(client: reqwest::Client, base_url: &str, credentials: AlpacaCredentials) -> Self {
        Self { client, base_url: base_url.trim_end_matches('/').to_string(), credentials }
    }

    fn request(&self, method: reqwest::Method, endpoint: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{endpoint}", self.base_url))
            .header("APCA-API-KEY-ID", &self.credentials.key_id)
            .header("APCA-API-SECRET-KEY", &self.credentials.secret_key)
    }

    async fn fetch<T: serde::de::DeserializeOwned>(
        &self,
        endpoint: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(T, Vec<u8>), VenueError> {
        let (status, body) = send(VENUE, endpoint, request).await?;
        if !(200..300).contains(&status) {
            return Err(failure(endpoint, status, &body));
        }
        Ok((json(VENUE, endpoint, &body)?, body))
    }
}

#[async_trait::async_trait]
impl Broker for AlpacaBroker {
    fn venue(&self) -> &'static str {
        VENUE
    }

    async fn submit(&self, order: &OrderRequest) -> Result<VenueOrder, VenueError> {
        let endpoint = "/v2/orders";
        let (qty, limit) = round_for_alpaca(order.qty, order.order_type.limit_price());
        // Alpaca's type names are ours: market, limit, stop, stop_limit.
        let mut payload = serde_json::json!({
            "symbol": order.symbol,
            "qty": qty.to_string(),
            "side": match order.side { Side::Buy => "buy", Side::Sell => "sell" },
            "type": order.order_type.name(),
            "time_in_force": match order.time_in_force {
                TimeInForce::Day => "day",
                TimeInForce::Gtc => "gtc",
                TimeInForce::Ioc => "ioc",
                TimeInForce::Fok => "fok",
            },
            "client_order_id": order.client_order_id,
        });
        if let Some(limit) = limit {
            payload["limit_price"] = serde_json::Value::String(limit.to_string());
        }
        if let Some(stop) = order.order_type.stop_price().map(round_price) {
            payload["stop_price"] = serde_json::Value::String(stop.to_string());
        }
        let request = self.request(reqwest::Method::POST, endpoint).json(&payload);
        let (wire, body): (WireOrder, _) = self.fetch(endpoint, request).await?;
        order_from_wire(endpoint, &body, wire)
    }

    async fn order_by_client_id(&self, _symbol: &str, client_order_id: &str) -> Result<Option<VenueOrder>, VenueError> {
        let endpoint = "/v2/orders:by_client_order_id";
        let request = self.request(reqwest::Method::GET, endpoint).query(&[("client_order_id", client_order_id)]);
        let (status, body) = send(VENUE, endpoint, request).await?;
        match status {
            404 => Ok(None),
            200..=299 => order_from_wire(endpoint, &body, json(VENUE, endpoint, &body)?).map(Some),
            _ => Err(failure(endpoint, status, &body)),
        }
    }

    async fn order_by_venue_id(&self, _symbol: &str, venue_order_id: &str) -> Result<Option<VenueOrder>, VenueError> {
        let endpoint = format!("/v2/orders/{}", path_segment(venue_order_id));
        let (status, body) = send(VENUE, &endpoint, self.request(reqwest::Method::GET, &endpoint)).await?;
        match status {
            404 => Ok(None),
            200..=299 => order_from_wire(&endpoint, &body, json(VENUE, &endpoint, &body)?).map(Some),
            _ => Err(failure(&endpoint, status, &body)),
        }
    }

    async fn cancel(&self, _symbol: &str, venue_order_id: &str) -> Result<(), VenueError> {
        let endpoint = format!("/v2/orders/{}", path_segment(venue_order_id));
        let (status, body) = send(VENUE, &endpoint, self.request(reqwest::Method::DELETE, &endpoint)).await?;
        if (200..300).contains(&status) { Ok(()) } else { Err(failure(&endpoint, status, &body)) }
    }

    async fn open_orders(&self) -> Result<Vec<VenueOrder>, VenueError> {
        let endpoint = "/v2/orders";
        let request = self.request(reqwest::Method::GET, endpoint).query(&[("status", "open"), ("limit", "500")]);
        let (wire, body): (Vec<WireOrder>, _) = self.fetch(endpoint, request).await?;
        wire.into_iter().map(|w| order_from_wire(endpoint, &body, w)).collect()
    }

    async fn positions(&self) -> Result<Vec<VenuePosition>, VenueError> {
        let endpoint = "/v2/positions";
        let (wire, body): (Vec<WirePosition>, _) =
            self.fetch(endpoint, self.request(reqwest::Method::GET, endpoint)).await?;
        wire.into_iter()
            .map(|w| {
                let mut qty = decimal(endpoint, &body, "qty", &w.qty)?;
                if w.side.as_deref() == Some("short") && qty.is_sign_positive() {
                    qty = -qty;
                }
                Ok(VenuePosition {
                    symbol: w.symbol,
                    qty,
                    avg_price: decimal(endpoint, &body, "avg_entry_price", &w.avg_entry_price)?,
                })
            })
            .collect()
    }

    async fn account(&self) -> Result<VenueAccount, VenueError> {
        let endpoint = "/v2/account";
        let (wire, body): (WireAccount, _) = self.fetch(endpoint, self.request(reqwest::Method::GET, endpoint)).await?;
        Ok(VenueAccount {
            cash: decimal(endpoint, &body, "cash", &wire.cash)?,
            buying_power: decimal(endpoint, &body, "buying_power", &wire.buying_power)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn rounds_to_alpaca_increments() {
        let d = |s: &str| Decimal::from_str(s).unwrap();
        assert_eq!(round_for_alpaca(d("1.1234567899"), Some(d("12.345"))), (d("1.123456789"), Some(d("12.34"))));
        assert_eq!(round_for_alpaca(d("3"), Some(d("0.123456"))), (d("3"), Some(d("0.1235"))));
    }

    #[test]
    fn maps_errors_by_status() {
        let body = br#"{"code": 40310000, "message": "insufficient buying power"}"#;
        let err = failure("/v2/orders", 403, body);
        assert!(
            matches!(&err, VenueError::Rejected { status: 403, code: Some(VenueCode::Number(40310000)), message, .. } if message == "insufficient buying power")
        );
        assert!(matches!(failure("/v2/orders", 503, b"oops"), VenueError::Unknown { .. }));
        assert!(matches!(failure("/v2/orders", 422, b"<html>"), VenueError::Rejected { code: None, .. }));
        let unauthorized = failure("/v2/orders", 401, br#"{"code": 40110000, "message": "request is not authorized"}"#);
        assert!(matches!(unauthorized, VenueError::Unauthorized { status: 401, .. }), "{unauthorized}");
    }

    #[test]
    fn done_for_day_is_open_and_replaced_is_final() {
        let (ten, none, some) = (Decimal::from(10), Decimal::ZERO, Decimal::from(4));
        assert_eq!(status_from_wire("done_for_day", ten, none), Some(OrderStatus::Accepted));
        assert_eq!(status_from_wire("done_for_day", ten, some), Some(OrderStatus::PartiallyFilled));
        assert_eq!(status_from_wire("replaced", ten, none), Some(OrderStatus::Canceled));
        assert_eq!(status_from_wire("calculated", ten, ten), Some(OrderStatus::Filled));
        assert_eq!(status_from_wire("calculated", ten, some), Some(OrderStatus::PartiallyFilled));
        assert_eq!(status_from_wire("bogus", ten, none), None);
    }
}
