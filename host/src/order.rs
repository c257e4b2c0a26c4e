//! Orders, as strategies propose them and brokers fill them.

use std::fmt;
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::bar::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    /// +1 for a buy, -1 for a sell, to sign quantities.
    pub fn sign(self) -> Decimal {
        match self {
            Side::Buy => Decimal::ONE,
            Side::Sell => Decimal::NEGATIVE_ONE,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderType {
    Market,
    Limit {
        price: Decimal,
    },
    /// A market order once the market trades at or through `stop` (up
    /// for a buy, down for a sell).
    Stop {
        stop: Decimal,
    },
    /// A limit order at `limit` once the market trades at or through `stop`.
    StopLimit {
        stop: Decimal,
        limit: Decimal,
    },
}

impl OrderType {
    /// The lowercase name the store, the venues and webhooks use.
    pub fn name(self) -> &'static str {
        match self {
            OrderType::Market => "market",
            OrderType::Limit { .. } => "limit",
            OrderType::Stop { .. } => "stop",
            OrderType::StopLimit { .. } => "stop_limit",
        }
    }

    /// The price it trades at or better, once working: a limit's or a
    /// stop-limit's limit.
    pub fn limit_price(self) -> Option<Decimal> {
        match self {
            OrderType::Limit { price } => Some(price),
            OrderType::StopLimit { limit, .. } => Some(limit),
            OrderType::Market | OrderType::Stop { .. } => None,
        }
    }

    /// The price that sets it working: a stop's or a stop-limit's stop.
    pub fn stop_price(self) -> Option<Decimal> {
        match self {
            OrderType::Stop { stop } | OrderType::StopLimit { stop, .. } => Some(stop),
            OrderType::Market | OrderType::Limit { .. } => None,
        }
    }

    /// The price its notional is reckoned at: the limit when it has one,
    /// else the stop; a market order has none (the last price stands in).
    pub fn reference_price(self) -> Option<Decimal> {
        self.limit_price().or(self.stop_price())
    }

    /// The type with these prices: none is a market order, a limit alone a
    /// limit order, a stop alone a stop order, both a stop-limit.
    pub fn from_prices(limit: Option<Decimal>, stop: Option<Decimal>) -> Self {
        match (limit, stop) {
            (None, None) => OrderType::Market,
            (Some(price), None) => OrderType::Limit { price },
            (None, Some(stop)) => OrderType::Stop { stop },
            (Some(limit), Some(stop)) => OrderType::StopLimit { stop, limit },
        }
    }
}

/// As journal lines show it: `market`, `limit 101.5`, `stop 101.5`,
/// `stop_limit 101.5/102` (stop, then limit).
impl fmt::Display for OrderType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderType::Market => f.write_str("market"),
            OrderType::Limit { price } => write!(f, "limit {price}"),
            OrderType::Stop { stop } => write!(f, "stop {stop}"),
            OrderType::StopLimit { stop, limit } => write!(f, "stop_limit {stop}/{limit}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeInForce {
    Day,
    Gtc,
    Ioc,
    Fok,
}

/// Where an order stands, as the host records it. The first three are the
/// host's own (not yet known to the venue); the rest are what the venue says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Decided and committed with the strategy's state; not yet tried.
    Queued,
    /// A request is (or was) on its way; the venue may or may not have it.
    Pending,
    /// A request's outcome is unknown (timeout, 5XX, dropped connection):
    /// it must be looked up by client order id before anything is resent.
    Unknown,
    /// Acknowledged by the venue and working, nothing filled.
    Accepted,
    PartiallyFilled,
    Filled,
    Canceled,
    Expired,
    Rejected,
}

impl OrderStatus {
    const ALL: [OrderStatus; 9] = [
        OrderStatus::Queued,
        OrderStatus::Pending,
        OrderStatus::Unknown,
        OrderStatus::Accepted,
        OrderStatus::PartiallyFilled,
        OrderStatus::Filled,
        OrderStatus::Canceled,
        OrderStatus::Expired,
        OrderStatus::Rejected,
    ];

    /// The name stored in the database and used in journal lines.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Queued => "queued",
            OrderStatus::Pending => "pending",
            OrderStatus::Unknown => "unknown",
            OrderStatus::Accepted => "accepted",
            OrderStatus::PartiallyFilled => "partially_filled",
            OrderStatus::Filled => "filled",
            OrderStatus::Canceled => "canceled",
            OrderStatus::Expired => "expired",
            OrderStatus::Rejected => "rejected",
        }
    }

    /// The status named `text`, as [`OrderStatus::as_str`] writes it.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether the venue may still trade it, or may have it without our
    /// knowing yet. Such an order is never given up on.
    pub fn is_open(self) -> bool {
        !self.is_final() && self != OrderStatus::Queued
    }

    /// Whether nothing more can happen to it.
    pub fn is_final(self) -> bool {
        matches!(self, OrderStatus::Filled | OrderStatus::Canceled | OrderStatus::Expired | OrderStatus::Rejected)
    }

    /// Whether the host does not know if the venue has it: the order must
    /// be looked up by client order id, and resent only if it is not there.
    pub fn is_unresolved(self) -> bool {
        matches!(self, OrderStatus::Pending | OrderStatus::Unknown)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which order: the id a strategy gave it, within one lifetime of the
/// strategy instance.
///
/// An instance created afresh (not restored from saved state) starts a new
/// lifetime, so its ids never collide with an earlier instance's, and the
/// fills of earlier lifetimes' orders move the position without being told
/// to it. Orders placed from outside the strategy (webhooks in `order` mode)
/// have lifetime [`OrderRef::EXTERNAL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrderRef {
    pub lifetime: u32,
    pub id: u64,
}

impl OrderRef {
    /// The lifetime of orders that did not come from the strategy.
    pub const EXTERNAL: u32 = 0;

    pub fn new(lifetime: u32, id: u64) -> Self {
        Self { lifetime, id }
    }

    pub fn is_external(self) -> bool {
        self.lifetime == Self::EXTERNAL
    }
}

impl fmt::Display for OrderRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_external() { write!(f, "external {}", self.id) } else { write!(f, "{}.{}", self.lifetime, self.id) }
    }
}

/// What an order is called in the engine and the store.
pub type IntentId = OrderRef;

/// What an order asks for, whoever proposed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderIntent {
    pub symbol: Arc<str>,
    pub side: Side,
    pub qty: Decimal,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
}

impl OrderIntent {
    /// A good-till-canceled market order: what webhook alerts place.
    pub fn market(symbol: Arc<str>, side: Side, qty: Decimal) -> Self {
        Self { symbol, side, qty, order_type: OrderType::Market, time_in_force: TimeInForce::Gtc }
    }
}

/// An intent that passed the risk checks, as handed to a broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub intent_id: IntentId,
    pub intent: OrderIntent,
    /// When the host placed it.
    pub placed_at: Millis,
}

/// A (partial) execution of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fill {
    pub intent_id: IntentId,
    pub symbol: Arc<str>,
    pub side: Side,
    pub qty: Decimal,
    pub price: Decimal,
    pub commission: Decimal,
    pub time: Millis,
}

/// Severity of a strategy's log line or `notify` action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

/// What a strategy asks the host to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Place an order under the strategy's own `id`.
    Submit {
        id: u64,
        intent: OrderIntent,
    },
    /// Cancel the strategy's order `id`.
    Cancel {
        id: u64,
    },
    Notify {
        level: Level,
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_types_show_their_prices_and_name_them() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        let types = [
            (OrderType::Market, "market", "market"),
            (OrderType::Limit { price: d("101.5") }, "limit", "limit 101.5"),
            (OrderType::Stop { stop: d("101.5") }, "stop", "stop 101.5"),
            (OrderType::StopLimit { stop: d("101.5"), limit: d("102") }, "stop_limit", "stop_limit 101.5/102"),
        ];
        for (order_type, name, shown) in types {
            assert_eq!((order_type.name(), order_type.to_string().as_str()), (name, shown));
            assert_eq!(OrderType::from_prices(order_type.limit_price(), order_type.stop_price()), order_type);
        }
        let stop_limit = types[3].0;
        assert_eq!(stop_limit.reference_price(), Some(d("102")), "a stop-limit is valued at its limit");
        assert_eq!(types[2].0.reference_price(), Some(d("101.5")), "a stop at its stop");
        assert_eq!(OrderType::Market.reference_price(), None);
    }
}
