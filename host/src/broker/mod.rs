//! Brokers: where approved orders go and fills come from. The venues'
//! brokers live with the rest of each venue, in [`crate::venues`].

mod paper;
#[cfg(test)]
pub(crate) mod scripted;

pub use self::paper::{Commission, PaperBroker};
pub use crate::venues::alpaca::{AlpacaBroker, AlpacaCredentials, AlpacaTradeStream};
pub use crate::venues::binance::{
    BinanceBroker, BinanceCredentials, BinanceUserStream, LotRule, NotionalRule, SymbolFilters,
    sign as binance_signature,
};
pub use crate::venues::kalshi::{KalshiBroker, KalshiCredentials, KalshiFillStream};

use rust_decimal::Decimal;

use crate::bar::Bar;
pub use crate::order::OrderStatus;
use crate::order::{Fill, IntentId, Order, OrderType, Side, TimeInForce};
use crate::venue::VenueError;

/// An order as sent to a venue, already rounded to its increments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRequest {
    /// Deterministic and persisted before sending; the venue's duplicate
    /// check and our lookup both key on it.
    pub client_order_id: String,
    pub symbol: String,
    pub side: Side,
    pub qty: Decimal,
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
}

/// What a venue says about one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenueOrder {
    pub venue_order_id: String,
    pub client_order_id: String,
    pub symbol: String,
    pub side: Side,
    pub qty: Decimal,
    pub filled_qty: Decimal,
    pub filled_avg_price: Option<Decimal>,
    /// What the venue says; never `Queued`, `Pending` or `Unknown`.
    pub status: OrderStatus,
}

/// A position as the venue holds it; `qty` is negative when short.
/// What a venue's stream says of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderNews {
    /// Its whole state now (Alpaca's trade updates, Binance's execution
    /// reports).
    State { order: VenueOrder },
    /// It changed (a Kalshi fill): ask the venue for its state.
    Changed { symbol: String, venue_order_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenuePosition {
    pub symbol: String,
    pub qty: Decimal,
    pub avg_price: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VenueAccount {
    pub cash: Decimal,
    pub buying_power: Decimal,
}

/// An order the host placed, as the host knows it.
#[derive(Debug, Clone, Copy)]
pub struct OrderKey<'a> {
    pub symbol: &'a str,
    pub client_order_id: &'a str,
    pub venue_order_id: Option<&'a str>,
}

/// A venue's order API, as the router and the sync loop use it.
#[async_trait::async_trait]
pub trait Broker: Send + Sync {
    fn venue(&self) -> &'static str;

    /// Places an order. On [`VenueError::Unknown`] the order may exist: look
    /// it up by client order id before sending it again.
    async fn submit(&self, order: &OrderRequest) -> Result<VenueOrder, VenueError>;

    /// The order with this client order id, if the venue has it. Some
    /// venues (Binance) key orders by symbol, so it is passed too.
    async fn order_by_client_id(&self, symbol: &str, client_order_id: &str) -> Result<Option<VenueOrder>, VenueError>;

    /// The order with this venue order id, if the venue has it: one
    /// request where a lookup by client order id may have to scan. A broker
    /// that cannot do it answers an error, never `None`, so a caller cannot
    /// mistake "cannot tell" for "absent".
    async fn order_by_venue_id(&self, symbol: &str, venue_order_id: &str) -> Result<Option<VenueOrder>, VenueError> {
        let _ = (symbol, venue_order_id);
        Err(VenueError::Status {
            venue: self.venue(),
            endpoint: "order_by_venue_id".into(),
            status: 501,
            body: "this broker cannot look orders up by venue order id".into(),
        })
    }

    /// The order as the venue has it now, for a sync: one request by the
    /// venue's id once it is known (a lookup by client order id may have
    /// to scan). A venue that can forget ids (IBKR, after a session
    /// reset) falls back to what else it keeps.
    async fn lookup(&self, key: &OrderKey<'_>) -> Result<Option<VenueOrder>, VenueError> {
        match key.venue_order_id {
            Some(id) => self.order_by_venue_id(key.symbol, id).await,
            None => self.order_by_client_id(key.symbol, key.client_order_id).await,
        }
    }

    async fn cancel(&self, symbol: &str, venue_order_id: &str) -> Result<(), VenueError>;

    async fn open_orders(&self) -> Result<Vec<VenueOrder>, VenueError>;

    async fn positions(&self) -> Result<Vec<VenuePosition>, VenueError>;

    async fn account(&self) -> Result<VenueAccount, VenueError>;
}

/// Why an execution venue did not take an order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecutionError {
    /// The venue refused it; resending the same order will not help.
    #[error("rejected by the broker: {reason}")]
    Rejected { reason: String },
}

/// What an execution venue reports back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutionEvent {
    Filled {
        fill: Fill,
    },
    /// An order ended unfilled, e.g. an IOC limit that did not trade.
    Expired {
        intent_id: IntentId,
        symbol: std::sync::Arc<str>,
        reason: String,
    },
}

/// The capability to execute the engine's approved orders, synchronously:
/// a simulated venue in a backtest. Real venues are [`Broker`]s, reached
/// through the router.
pub trait Execution: Send {
    fn submit(&mut self, order: Order) -> Result<(), ExecutionError>;

    /// Cancels an open order; `false` if there was none with that id.
    fn cancel(&mut self, intent_id: IntentId) -> bool;

    /// Shows a simulated venue the next bar so it can match orders;
    /// real venues ignore it.
    fn on_bar(&mut self, bar: &Bar, events: &mut Vec<ExecutionEvent>);

    /// Signed quantity of open orders in `symbol`.
    fn open_exposure(&self, symbol: &str) -> Decimal;

    /// The orders still open, oldest first.
    fn open_orders(&self) -> Vec<IntentId>;

    /// The open orders in full, where this execution keeps them (the paper
    /// broker; a venue's are in the store).
    fn working(&self) -> Vec<Order> {
        Vec::new()
    }

    /// Hears about an execution reported from outside `on_bar` (a live
    /// venue), so open-order bookkeeping stays right.
    fn on_event(&mut self, _event: &ExecutionEvent) {}
}
