//! Brokers: where approved orders go and fills come from.

mod paper;

pub use self::paper::{Commission, PaperBroker};

use rust_decimal::Decimal;

use crate::bar::Bar;
use crate::order::{Fill, IntentId, Order};

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

    /// How many orders are open.
    fn open_orders(&self) -> usize;
}
