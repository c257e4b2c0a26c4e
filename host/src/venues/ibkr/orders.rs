//! Orders through the gateway (`/iserver/account/{accountId}/orders`).
//!
//! Each order carries the host's client order id as `cOID`, which the
//! gateway reports back as `order_ref`: the router's lookup before any
//! resend scans the live orders for it. Placing an order may be answered
//! with a question (`{"id", "message", "messageIds"}`) instead of an order
//! id; the question is confirmed through `/iserver/reply/{id}` only when
//! every one of its message ids is in `ibkr.confirm`, and declined (and
//! the order refused, naming the question) otherwise. The live orders list
//! may come back empty with `"snapshot": false` while the gateway is still
//! loading it: that is never read as "no orders".

use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::gateway::IbkrGateway;
use super::wire::{VENUE, error_text, failure, malformed};
use crate::broker::{Broker, OrderKey, OrderRequest, OrderStatus, VenueAccount, VenueOrder, VenuePosition};
use crate::order::{OrderType, Side, TimeInForce};
use crate::venue::{VenueError, json};

/// Most questions answered for one order before giving up on it.
const MAX_QUESTIONS: usize = 8;
const MAX_POSITION_PAGES: usize = 100;

pub struct IbkrBroker {
    gateway: Arc<IbkrGateway>,
}

/// One order of a placement request, as the gateway reads it.
#[derive(Serialize)]
struct WireOrderRequest<'a> {
    #[serde(rename = "acctId")]
    account: &'a str,
    conid: i64,
    #[serde(rename = "cOID")]
    client_order_id: &'a str,
    #[serde(rename = "orderType")]
    order_type: &'static str,
    side: &'static str,
    #[serde(with = "rust_decimal::serde::arbitrary_precision")]
    quantity: Decimal,
    tif: &'static str,
    #[serde(skip_serializing_if = "Option::is_none", with = "rust_decimal::serde::arbitrary_precision_option")]
    price: Option<Decimal>,
    #[serde(
        rename = "auxPrice",
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::arbitrary_precision_option"
    )]
    aux_price: Option<Decimal>,
}

/// One element of what placing an order (or answering a question) returns.
#[derive(Deserialize)]
#[serde(untagged)]
enum Placement {
    Placed {
        #[serde(deserialize_with = "super::wire::id")]
        order_id: String,
        #[serde(default)]
        order_status: Option<String>,
    },
    Question {
        id: String,
        #[serde(default)]
        message: Vec<String>,
        #[serde(default, rename = "messageIds")]
        message_ids: Vec<String>,
    },
    Refused {
        error: Value,
    },
}

/// An order as the live orders list writes it.
#[derive(Deserialize)]
struct LiveOrder {
    #[serde(rename = "orderId", deserialize_with = "super::wire::id")]
    order_id: String,
    #[serde(default)]
    order_ref: Option<String>,
    #[serde(default)]
    ticker: Option<String>,
    #[serde(default, deserialize_with = "super::wire::id_opt")]
    conid: Option<String>,
    side: String,
    status: String,
    #[serde(default, rename = "totalSize", deserialize_with = "super::wire::decimal_opt")]
    total_size: Option<Decimal>,
    #[serde(default, rename = "filledQuantity", deserialize_with = "super::wire::decimal_opt")]
    filled: Option<Decimal>,
    #[serde(default, rename = "remainingQuantity", deserialize_with = "super::wire::decimal_opt")]
    remaining: Option<Decimal>,
    #[serde(default, rename = "avgPrice", deserialize_with = "super::wire::decimal_opt")]
    avg_price: Option<Decimal>,
}

/// One execution (`/iserver/account/trades`).
#[derive(Deserialize)]
struct Execution {
    #[serde(default)]
    order_ref: Option<String>,
    #[serde(default)]
    symbol: Option<String>,
    #[serde(default, deserialize_with = "super::wire::id_opt")]
    conid: Option<String>,
    side: String,
    #[serde(deserialize_with = "super::wire::decimal")]
    size: Decimal,
    #[serde(deserialize_with = "super::wire::decimal")]
    price: Decimal,
}

/// One order's status (`/iserver/account/order/status/{orderId}`).
#[derive(Deserialize)]
struct OrderState {
    #[serde(deserialize_with = "super::wire::id")]
    order_id: String,
    #[serde(default)]
    order_ref: Option<String>,
    #[serde(default)]
    symbol: Option<String>,
    #[serde(default, deserialize_with = "super::wire::id_opt")]
    conid: Option<String>,
    side: String,
    order_status: String,
    #[serde(default, deserialize_with = "super::wire::decimal_opt")]
    total_size: Option<Decimal>,
    #[serde(default, deserialize_with = "super::wire::decimal_opt")]
    cum_fill: Option<Decimal>,
    #[serde(default, deserialize_with = "super::wire::decimal_opt")]
    average_price: Option<Decimal>,
}

#[derive(Deserialize)]
struct WirePosition {
    #[serde(deserialize_with = "super::wire::id")]
    conid: String,
    #[serde(deserialize_with = "super::wire::decimal")]
    position: Decimal,
    #[serde(default, rename = "avgPrice", deserialize_with = "super::wire::decimal_opt")]
    avg_price: Option<Decimal>,
    #[serde(default, rename = "avgCost", deserialize_with = "super::wire::decimal_opt")]
    avg_cost: Option<Decimal>,
    #[serde(default)]
    ticker: Option<String>,
    #[serde(default, rename = "contractDesc")]
    contract_desc: Option<String>,
}

#[derive(Deserialize)]
struct Amount {
    #[serde(default, deserialize_with = "super::wire::decimal_opt")]
    amount: Option<Decimal>,
}

#[derive(Deserialize)]
struct Summary {
    #[serde(default)]
    totalcashvalue: Option<Amount>,
    #[serde(default)]
    buyingpower: Option<Amount>,
}

/// What the gateway's words for an order's state mean here.
fn status_from_wire(endpoint: &str, status: &str, filled: Decimal, qty: Decimal) -> Result<OrderStatus, VenueError> {
    let open = if filled > Decimal::ZERO { OrderStatus::PartiallyFilled } else { OrderStatus::Accepted };
    Ok(match status {
        "PendingSubmit" | "PreSubmitted" | "Submitted" | "PendingCancel" | "ApiPending" | "WarnState" => open,
        "Filled" if filled >= qty => OrderStatus::Filled,
        "Filled" => OrderStatus::PartiallyFilled,
        "Cancelled" | "ApiCancelled" => OrderStatus::Canceled,
        "Inactive" if filled > Decimal::ZERO => OrderStatus::Canceled,
        "Inactive" => OrderStatus::Rejected,
        other => {
            return Err(malformed(endpoint, &[], format!("unknown order status `{}`", crate::runtime::bounded(other))));
        }
    })
}

fn side_from_wire(endpoint: &str, side: &str) -> Result<Side, VenueError> {
    match side {
        "BUY" | "B" => Ok(Side::Buy),
        "SELL" | "S" => Ok(Side::Sell),
        other => Err(malformed(endpoint, &[], format!("unknown side `{}`", crate::runtime::bounded(other)))),
    }
}

impl IbkrBroker {
    pub fn new(gateway: Arc<IbkrGateway>) -> Self {
        Self { gateway }
    }

    fn orders_path(&self) -> String {
        format!("/iserver/account/{}/orders", self.gateway.account())
    }

    /// The symbol a contract id stands for: the one this host resolved it
    /// for, else what the gateway calls it.
    fn symbol_for(&self, conid: Option<&str>, named: Option<&str>) -> String {
        conid
            .and_then(|id| self.gateway.contracts.symbol_of(id))
            .or_else(|| named.map(str::to_string))
            .unwrap_or_default()
    }

    /// The body of one order to place.
    fn wire_order<'a>(&'a self, order: &'a OrderRequest, conid: i64) -> Result<WireOrderRequest<'a>, VenueError> {
        let refuse = |message: String| VenueError::Rejected {
            venue: VENUE,
            endpoint: self.orders_path(),
            status: 400,
            code: None,
            message,
        };
        let (order_type, price, aux_price) = match order.order_type {
            OrderType::Market => ("MKT", None, None),
            OrderType::Limit { price } => ("LMT", Some(price), None),
            // A stop's trigger goes in `price`; a stop-limit's in `auxPrice`.
            OrderType::Stop { stop } => ("STP", Some(stop), None),
            OrderType::StopLimit { stop, limit } => ("STOP_LIMIT", Some(limit), Some(stop)),
        };
        let tif = match order.time_in_force {
            TimeInForce::Day => "DAY",
            TimeInForce::Gtc => "GTC",
            TimeInForce::Ioc => "IOC",
            TimeInForce::Fok => {
                return Err(refuse("the Client Portal API has no fill-or-kill orders: refused before sending".into()));
            }
        };
        if order.qty <= Decimal::ZERO || !order.qty.fract().is_zero() {
            let message = format!("quantity {} is not a whole number of shares (the API takes no fractions)", order.qty);
            return Err(refuse(message));
        }
        Ok(WireOrderRequest {
            account: self.gateway.account(),
            conid,
            client_order_id: &order.client_order_id,
            order_type,
            side: match order.side {
                Side::Buy => "BUY",
                Side::Sell => "SELL",
            },
            quantity: order.qty.normalize(),
            tif,
            price: price.map(|p| p.normalize()),
            aux_price: aux_price.map(|p| p.normalize()),
        })
    }

    /// Reads a placement answer, answering questions by the policy until
    /// the order is placed or refused.
    async fn settle_placement(
        &self,
        order: &OrderRequest,
        mut status: u16,
        mut body: Vec<u8>,
    ) -> Result<VenueOrder, VenueError> {
        let mut endpoint = self.orders_path();
        for _ in 0..MAX_QUESTIONS {
            if !(200..300).contains(&status) {
                return Err(failure(&endpoint, status, &body));
            }
            let refused = |message: String| VenueError::Rejected {
                venue: VENUE,
                endpoint: endpoint.clone(),
                status,
                code: None,
                message,
            };
            if let Some(said) = error_text(&body) {
                return Err(refused(said));
            }
            let answer: Vec<Placement> = json(VENUE, &endpoint, &body)?;
            let Some(first) = answer.into_iter().next() else {
                return Err(malformed(&endpoint, &body, "an empty answer"));
            };
            match first {
                Placement::Placed { order_id, order_status } => {
                    let status = match order_status.as_deref() {
                        Some("Cancelled" | "Inactive") => OrderStatus::Rejected,
                        _ => OrderStatus::Accepted,
                    };
                    return Ok(VenueOrder {
                        venue_order_id: order_id,
                        client_order_id: order.client_order_id.clone(),
                        symbol: order.symbol.clone(),
                        side: order.side,
                        qty: order.qty,
                        filled_qty: Decimal::ZERO,
                        filled_avg_price: None,
                        status,
                    });
                }
                Placement::Refused { error } => {
                    let said = error.as_str().map(str::to_string).unwrap_or_else(|| error.to_string());
                    return Err(refused(crate::runtime::bounded(&said)));
                }
                Placement::Question { id, message, message_ids } => {
                    let text = crate::runtime::bounded(&message.join(" "));
                    let confirmed = !message_ids.is_empty()
                        && message_ids.iter().all(|m| self.gateway.config.confirm.iter().any(|c| c == m));
                    if !confirmed {
                        // Declined so the gateway drops it; the order is refused either way.
                        if let Err(error) = self.gateway.reply_in_turn(&id, false).await
                        {
                            tracing::warn!(venue = VENUE, %error, "could not decline a question");
                        }
                        let ids = if message_ids.is_empty() { "no message id".into() } else { message_ids.join(", ") };
                        return Err(refused(format!(
                            "the gateway asked to confirm ({}): {text}; not in `ibkr.confirm`, so the order was not placed",
                            crate::runtime::bounded(&ids)
                        )));
                    }
                    tracing::info!(venue = VENUE, ids = %message_ids.join(","), question = %text, client_order_id = %order.client_order_id, "confirming the gateway's question");
                    (status, body) = self.gateway.reply_in_turn(&id, true).await?;
                    endpoint = "/iserver/reply".into();
                }
            }
        }
        Err(VenueError::Unknown {
            venue: VENUE,
            endpoint,
            message: format!("still asking questions after {MAX_QUESTIONS} answers"),
        })
    }

    /// What the executions of the last seven days say of the order with
    /// `client_order_id` (`order_ref`), which the live orders no longer
    /// list: it ended in an earlier session. Its fills are exact; whether
    /// its rest was canceled is not said, and it is read as ended.
    async fn ended_elsewhere(&self, client_order_id: &str) -> Result<Option<VenueOrder>, VenueError> {
        let endpoint = "/iserver/account/trades";
        let trades: Vec<Execution> = self.gateway.get(endpoint, endpoint, &[("days", "7".to_string())]).await?;
        let mine: Vec<Execution> =
            trades.into_iter().filter(|t| t.order_ref.as_deref() == Some(client_order_id)).collect();
        let Some(first) = mine.first() else { return Ok(None) };
        let side = side_from_wire(endpoint, &first.side)?;
        let symbol = self.symbol_for(first.conid.as_deref(), first.symbol.as_deref());
        let filled: Decimal = mine.iter().map(|t| t.size).sum();
        let cost: Decimal = mine.iter().map(|t| t.size * t.price).sum();
        if filled <= Decimal::ZERO {
            return Err(malformed(endpoint, &[], format!("executions of {client_order_id} add up to {filled}")));
        }
        Ok(Some(VenueOrder {
            venue_order_id: String::new(),
            client_order_id: client_order_id.to_string(),
            symbol,
            side,
            qty: filled,
            filled_qty: filled,
            filled_avg_price: Some(cost / filled),
            status: OrderStatus::Filled,
        }))
    }

    /// One order's status; `None` when the gateway no longer has it
    /// (a 503 for an order that ended before this session, as documented).
    async fn status_of(&self, venue_order_id: &str) -> Result<Option<VenueOrder>, VenueError> {
        let path = format!("/iserver/account/order/status/{}", crate::venue::path_segment(venue_order_id));
        let endpoint = "/iserver/account/order/status";
        let (status, body) = self.gateway.call(reqwest::Method::GET, &path, &[], None).await?;
        if status == 404 || status == 503 {
            return Ok(None);
        }
        if !(200..300).contains(&status) {
            return Err(failure(endpoint, status, &body));
        }
        if let Some(said) = error_text(&body) {
            // Not "absent": the gateway may not say so for an order it has.
            return Err(VenueError::Status { venue: VENUE, endpoint: endpoint.into(), status, body: said });
        }
        let state: OrderState = json(VENUE, endpoint, &body)?;
        let filled = state.cum_fill.unwrap_or_default();
        let seen = Seen {
            endpoint,
            conid: state.conid.as_deref(),
            named: state.symbol.as_deref(),
            side: &state.side,
            status: &state.order_status,
            qty: state.total_size.unwrap_or(filled),
            filled,
            avg: state.average_price,
        };
        self.venue_order(seen, state.order_id, state.order_ref).map(Some)
    }

    fn read_live(&self, o: LiveOrder) -> Result<VenueOrder, VenueError> {
        let filled = o.filled.unwrap_or_default();
        let seen = Seen {
            endpoint: "/iserver/account/orders",
            conid: o.conid.as_deref(),
            named: o.ticker.as_deref(),
            side: &o.side,
            status: &o.status,
            qty: o.total_size.unwrap_or_else(|| filled + o.remaining.unwrap_or_default()),
            filled,
            avg: o.avg_price,
        };
        self.venue_order(seen, o.order_id, o.order_ref)
    }

    /// An order as one of the gateway's two views of it says.
    fn venue_order(&self, seen: Seen<'_>, id: String, order_ref: Option<String>) -> Result<VenueOrder, VenueError> {
        Ok(VenueOrder {
            status: status_from_wire(seen.endpoint, seen.status, seen.filled, seen.qty)?,
            symbol: self.symbol_for(seen.conid, seen.named),
            side: side_from_wire(seen.endpoint, seen.side)?,
            venue_order_id: id,
            client_order_id: order_ref.unwrap_or_default(),
            qty: seen.qty,
            filled_qty: seen.filled,
            filled_avg_price: seen.avg.filter(|_| seen.filled > Decimal::ZERO),
        })
    }
}

/// What the live orders and an order's status have in common.
struct Seen<'a> {
    endpoint: &'a str,
    conid: Option<&'a str>,
    /// What the gateway calls the contract.
    named: Option<&'a str>,
    side: &'a str,
    status: &'a str,
    qty: Decimal,
    filled: Decimal,
    avg: Option<Decimal>,
}

#[async_trait::async_trait]
impl Broker for IbkrBroker {
    fn venue(&self) -> &'static str {
        VENUE
    }

    async fn submit(&self, order: &OrderRequest) -> Result<VenueOrder, VenueError> {
        let conid = self.gateway.conid(&order.symbol).await?;
        let conid: i64 = conid.parse().map_err(|_| malformed("contract cache", &[], format!("conid `{conid}`")))?;
        let body = serde_json::json!({ "orders": [self.wire_order(order, conid)?] });
        let path = self.orders_path();
        // Nothing else reaches the gateway until its questions are answered.
        let _alone = self.gateway.alone().await;
        let (status, answer) = self.gateway.call_in_turn(reqwest::Method::POST, &path, &[], Some(&body)).await?;
        self.settle_placement(order, status, answer).await
    }

    /// Scans the live orders for `order_ref`: every order still working and
    /// those that ended in this session. One that ended earlier is read
    /// from its executions (`/iserver/account/trades`, seven days back), so
    /// an order filled yesterday is never taken for absent and sent again.
    async fn order_by_client_id(&self, _symbol: &str, client_order_id: &str) -> Result<Option<VenueOrder>, VenueError> {
        let live: Vec<LiveOrder> = self.gateway.live_orders().await?;
        match live.into_iter().find(|o| o.order_ref.as_deref() == Some(client_order_id)) {
            Some(found) => self.read_live(found).map(Some),
            None => self.ended_elsewhere(client_order_id).await,
        }
    }

    /// By the order's status. An order the gateway no longer has (it ended
    /// before this session) is an error here, never `None`: only its
    /// client order id can find it now (see [`Broker::lookup`]).
    async fn order_by_venue_id(&self, _symbol: &str, venue_order_id: &str) -> Result<Option<VenueOrder>, VenueError> {
        match self.status_of(venue_order_id).await? {
            Some(order) => Ok(Some(order)),
            None => Err(VenueError::Unknown {
                venue: VENUE,
                endpoint: "/iserver/account/order/status".into(),
                message: format!("the gateway no longer has order {venue_order_id}; look it up by its cOID"),
            }),
        }
    }

    async fn lookup(&self, key: &OrderKey<'_>) -> Result<Option<VenueOrder>, VenueError> {
        if let Some(id) = key.venue_order_id
            && let Some(order) = self.status_of(id).await?
        {
            return Ok(Some(order));
        }
        let found = self.order_by_client_id(key.symbol, key.client_order_id).await?;
        // What the executions say carries no order id: keep the known one.
        Ok(found.map(|mut order| {
            if order.venue_order_id.is_empty()
                && let Some(id) = key.venue_order_id
            {
                order.venue_order_id = id.to_string();
            }
            order
        }))
    }

    async fn cancel(&self, _symbol: &str, venue_order_id: &str) -> Result<(), VenueError> {
        let path = format!(
            "/iserver/account/{}/order/{}",
            self.gateway.account(),
            crate::venue::path_segment(venue_order_id)
        );
        let (status, body) = self.gateway.call(reqwest::Method::DELETE, &path, &[], None).await?;
        if !(200..300).contains(&status) {
            return Err(failure(&path, status, &body));
        }
        match error_text(&body) {
            Some(said) => Err(VenueError::Rejected { venue: VENUE, endpoint: path, status, code: None, message: said }),
            None => Ok(()),
        }
    }

    async fn open_orders(&self) -> Result<Vec<VenueOrder>, VenueError> {
        let mut open = Vec::new();
        let live: Vec<LiveOrder> = self.gateway.live_orders().await?;
        for o in live {
            let order = self.read_live(o)?;
            if order.status.is_open() {
                open.push(order);
            }
        }
        Ok(open)
    }

    /// Read fresh: the portfolio's cache is invalidated first, since a
    /// position read stale after a fill would look like drift.
    async fn positions(&self) -> Result<Vec<VenuePosition>, VenueError> {
        let account = self.gateway.account().to_string();
        let invalidate = format!("/portfolio/{account}/positions/invalidate");
        let (status, body) = self.gateway.call(reqwest::Method::POST, &invalidate, &[], None).await?;
        if !(200..300).contains(&status) {
            return Err(failure("/portfolio/positions/invalidate", status, &body));
        }
        let endpoint = "/portfolio/positions";
        let mut positions = Vec::new();
        for page in 0..MAX_POSITION_PAGES {
            let path = format!("/portfolio/{account}/positions/{page}");
            let wire: Vec<WirePosition> = self.gateway.get(&path, endpoint, &[]).await?;
            // Pages hold 100 (30 in older gateways): only an empty one ends the list.
            let last = wire.is_empty();
            for p in wire {
                if p.position.is_zero() {
                    continue;
                }
                positions.push(VenuePosition {
                    symbol: self.symbol_for(Some(&p.conid), p.ticker.as_deref().or(p.contract_desc.as_deref())),
                    qty: p.position,
                    avg_price: p.avg_price.or(p.avg_cost).unwrap_or_default(),
                });
            }
            if last {
                return Ok(positions);
            }
        }
        Err(VenueError::Unknown {
            venue: VENUE,
            endpoint: endpoint.into(),
            message: format!("gave up after {MAX_POSITION_PAGES} pages; the list was not read to its end"),
        })
    }

    async fn account(&self) -> Result<VenueAccount, VenueError> {
        let path = format!("/portfolio/{}/summary", self.gateway.account());
        let summary: Summary = self.gateway.get(&path, "/portfolio/summary", &[]).await?;
        let amount = |a: Option<Amount>| a.and_then(|a| a.amount);
        let cash = amount(summary.totalcashvalue)
            .ok_or_else(|| malformed("/portfolio/summary", &[], "no `totalcashvalue.amount`"))?;
        Ok(VenueAccount { cash, buying_power: amount(summary.buyingpower).unwrap_or(cash) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_answers_are_orders_questions_or_refusals() {
        let placed: Vec<Placement> =
            serde_json::from_str(r#"[{"order_id":"1234","order_status":"Submitted","encrypt_message":"1"}]"#).unwrap();
        assert!(matches!(&placed[0], Placement::Placed { order_id, .. } if order_id == "1234"));
        let asked: Vec<Placement> = serde_json::from_str(
            r#"[{"id":"07a13a5a-4a48","message":["The order exceeds the price percentage limit"],"isSuppressed":false,"messageIds":["o163"]}]"#,
        )
        .unwrap();
        assert!(matches!(&asked[0], Placement::Question { message_ids, .. } if message_ids == &["o163"]));
        let refused: Vec<Placement> = serde_json::from_str(r#"[{"error":"no trading permission"}]"#).unwrap();
        assert!(matches!(&refused[0], Placement::Refused { .. }));
    }

    #[test]
    fn statuses_map_and_unknown_ones_are_errors() {
        let one = Decimal::ONE;
        let ten = Decimal::TEN;
        assert_eq!(status_from_wire("/", "PreSubmitted", Decimal::ZERO, ten).unwrap(), OrderStatus::Accepted);
        assert_eq!(status_from_wire("/", "Submitted", one, ten).unwrap(), OrderStatus::PartiallyFilled);
        assert_eq!(status_from_wire("/", "Filled", ten, ten).unwrap(), OrderStatus::Filled);
        assert_eq!(status_from_wire("/", "Cancelled", one, ten).unwrap(), OrderStatus::Canceled);
        assert_eq!(status_from_wire("/", "Inactive", Decimal::ZERO, ten).unwrap(), OrderStatus::Rejected);
        assert!(status_from_wire("/", "Teleported", Decimal::ZERO, ten).is_err());
    }
}
