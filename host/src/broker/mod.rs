//! Brokers: where approved orders go and fills come from.

mod paper;

pub use self::paper::{Commission, PaperBroker};

use rust_decimal::Decimal;

use crate::bar::Bar;
use crate::order::{Fill, IntentId, Order};

/// Why a broker did not take an order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerError {
    /// The venue refused it; resending the same order will not help.
    #[error("rejected by the broker: {reason}")]
    Rejected { reason: String },
}

/// What a broker reports back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerEvent {
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

/// The capability to execute orders.
pub trait Broker: Send {
    fn submit(&mut self, order: Order) -> Result<(), BrokerError>;

    /// Cancels an open order; `false` if there was none with that id.
    fn cancel(&mut self, intent_id: IntentId) -> bool;

    /// Shows a simulated venue the next bar so it can match orders;
    /// real venues ignore it.
    fn on_bar(&mut self, bar: &Bar, events: &mut Vec<BrokerEvent>);

    /// Signed quantity of open orders in `symbol`.
    fn open_exposure(&self, symbol: &str) -> Decimal;

    /// How many orders are open.
    fn open_orders(&self) -> usize;
}
