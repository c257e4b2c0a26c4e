//! The capability every strategy offers the engine, whatever runs it.

use std::sync::Arc;

use rust_decimal::Decimal;

use crate::bar::{Bar, Millis};
use crate::order::{Action, Fill};

/// Why a strategy misbehaved during one call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("exceeded its {timeout_ms} ms deadline")]
    Deadline { timeout_ms: u64 },
    #[error("trapped: {message}")]
    Trap { message: String },
    #[error("broke the contract: {message}")]
    Contract { message: String },
}

/// A strategy call that produced no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrategyError {
    /// The call was lost; the strategy was restarted and may be called
    /// again. It was restored from its last saved state, or, if `fresh`,
    /// created anew (a new lifetime: see [`crate::order::OrderRef`]).
    #[error("strategy `{strategy}` {fault} in {call}; restarted ({restarts} so far)")]
    Restarted { strategy: String, call: &'static str, fault: Fault, restarts: u32, fresh: bool },
    /// The strategy is stopped for good.
    #[error("strategy `{strategy}` failed: {reason}")]
    Failed { strategy: String, reason: String },
    /// The strategy refused a request, e.g. a state it cannot load.
    #[error("strategy `{strategy}` refused {call}: {message}")]
    Refused { strategy: String, call: &'static str, message: String },
    /// The host could not express its input in the contract's types.
    #[error("cannot pass data to strategy `{strategy}`: {message}")]
    Unrepresentable { strategy: String, message: String },
}

/// A trading strategy as the engine drives it.
///
/// Implemented by sandboxed WebAssembly plugins and, for benchmarks, by native
/// code. Callbacks return proposed actions; they never act themselves.
pub trait Strategy: Send {
    fn name(&self) -> &str;

    /// A batch of bars in time order; each action carries the index of the
    /// bar that caused it.
    fn on_bars(&mut self, bars: &[Bar]) -> Result<Vec<(usize, Action)>, StrategyError>;

    fn on_fill(&mut self, fill: &Fill) -> Result<Vec<Action>, StrategyError>;

    /// The strategy's order `id` was refused or expired.
    fn on_reject(&mut self, id: u64, symbol: &str, reason: &str) -> Result<Vec<Action>, StrategyError>;

    fn on_signal(&mut self, source: &str, payload: &str, time: Millis) -> Result<Vec<Action>, StrategyError>;

    fn save_state(&mut self) -> Result<Vec<u8>, StrategyError>;

    /// Replaces the instance with one restored from `state`; on an error
    /// the running instance is kept as it was.
    fn load_state(&mut self, state: &[u8]) -> Result<(), StrategyError>;

    /// Records the strategy's position, which it may query; called after fills.
    fn set_position(&mut self, symbol: &Arc<str>, qty: Decimal);

    /// Records the strategy's account, which it may query; called before
    /// every call.
    fn set_account(&mut self, account: Account);
}

/// A strategy's own cash and equity, as its engine's portfolio has them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Account {
    pub cash: Decimal,
    pub equity: Decimal,
}
