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
    Limit { price: Decimal },
}

impl fmt::Display for OrderType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderType::Market => f.write_str("market"),
            OrderType::Limit { price } => write!(f, "limit {price}"),
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

/// The number a strategy's `submit` received, counting from 1 per instance.
pub type IntentId = u64;

/// An order a strategy proposes.
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

/// Severity of a strategy's `notify` action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warning,
    Critical,
}

/// What a strategy asks the host to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Submit { intent: OrderIntent },
    Cancel { intent_id: IntentId },
    Notify { level: Level, message: String },
}
