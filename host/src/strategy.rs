//! The capability every strategy offers the engine, whatever runs it.

use std::sync::Arc;

use rust_decimal::Decimal;

use crate::bar::{Bar, Millis};
use crate::order::{Action, Fill};

/// Why a strategy misbehaved during one call. Each is a breach of one of
/// its limits (see [`Breaches`]) and costs it the call and a restart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    #[error("exceeded its {timeout_ms} ms deadline")]
    Deadline { timeout_ms: u64 },
    #[error("ran out of its {limit_mib} MiB of memory")]
    Memory { limit_mib: usize },
    #[error("overflowed its stack (deep recursion)")]
    Stack,
    #[error("handed the host more than its {limit} bytes per call")]
    Output { limit: usize },
    #[error("held more than its {limit} resource handles at once")]
    Handles { limit: usize },
    #[error("returned {count} actions; at most {limit} are allowed")]
    Actions { count: usize, limit: usize },
    #[error("saved more than its {limit} bytes of state")]
    State { limit: usize },
    #[error("trapped: {message}")]
    Trap { message: String },
    #[error("broke the contract: {message}")]
    Contract { message: String },
}

impl Fault {
    /// Counts this fault in `breaches`.
    pub fn count_in(&self, breaches: &mut Breaches) {
        let counter = match self {
            Fault::Deadline { .. } => &mut breaches.deadline,
            Fault::Memory { .. } => &mut breaches.memory,
            Fault::Stack => &mut breaches.stack,
            Fault::Output { .. } => &mut breaches.output,
            Fault::Handles { .. } => &mut breaches.handles,
            Fault::Actions { .. } => &mut breaches.actions,
            Fault::State { .. } => &mut breaches.state,
            Fault::Trap { .. } => &mut breaches.trap,
            Fault::Contract { .. } => &mut breaches.contract,
        };
        *counter += 1;
    }
}

/// How often a strategy broke each of its limits, by cause. The first
/// nine are faults (the call is lost and the strategy restarts); the last
/// three are limits per minute, which throttle instead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Breaches {
    /// Calls interrupted at their deadline.
    pub deadline: u64,
    /// Calls that grew memory (or a table) past the limit.
    pub memory: u64,
    /// Calls that overflowed the stack.
    pub stack: u64,
    /// Calls that handed the host more bytes than allowed.
    pub output: u64,
    /// Calls that held more resource handles than allowed (leaked WASI
    /// pollables or streams).
    pub handles: u64,
    /// Calls that returned more actions than allowed.
    pub actions: u64,
    /// `save-state` calls whose state was too large.
    pub state: u64,
    /// Other traps: panics, `unreachable`, `exit`.
    pub trap: u64,
    /// Results the host refused: bad decimals, symbols, reused order ids.
    pub contract: u64,
    /// Batches of bars the strategy did not see because it had used its
    /// CPU time for the minute.
    pub cpu: u64,
    /// Log lines and notifications dropped over the bytes per minute.
    pub log: u64,
    /// Orders refused over the orders per minute.
    pub orders: u64,
}

impl Breaches {
    /// Both counts added, field by field.
    pub fn plus(self, other: Breaches) -> Breaches {
        Breaches {
            deadline: self.deadline + other.deadline,
            memory: self.memory + other.memory,
            stack: self.stack + other.stack,
            output: self.output + other.output,
            handles: self.handles + other.handles,
            actions: self.actions + other.actions,
            state: self.state + other.state,
            trap: self.trap + other.trap,
            contract: self.contract + other.contract,
            cpu: self.cpu + other.cpu,
            log: self.log + other.log,
            orders: self.orders + other.orders,
        }
    }
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

    /// The plugin's own name and version, as it describes itself.
    fn plugin(&self) -> Option<(&str, &str)> {
        None
    }

    /// A batch of bars in time order; each action carries the index of the
    /// bar that caused it.
    fn on_bars(&mut self, bars: &[Bar]) -> Result<Vec<(usize, Action)>, StrategyError>;

    /// Fills of the strategy's own orders, in the order they happened.
    fn on_fills(&mut self, fills: &[Fill]) -> Result<Vec<Action>, StrategyError>;

    /// Orders of the strategy's that were refused or expired.
    fn on_rejects(&mut self, rejections: &[Rejection]) -> Result<Vec<Action>, StrategyError>;

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

    /// How often the strategy broke its limits, by cause.
    fn breaches(&self) -> Breaches {
        Breaches::default()
    }

    /// Releases a quarantined strategy: clears its faults and restarts it
    /// from its last saved state. `Ok(true)` if it had none and was created
    /// afresh (a new lifetime).
    fn revive(&mut self) -> Result<bool, StrategyError> {
        Err(StrategyError::Failed { strategy: self.name().into(), reason: "cannot be released".into() })
    }
}

/// An order of the strategy's that was refused or expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The id the strategy gave the order.
    pub order: u64,
    pub symbol: Arc<str>,
    pub reason: String,
}

/// A strategy's own cash and equity, as its engine's portfolio has them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Account {
    pub cash: Decimal,
    pub equity: Decimal,
}
