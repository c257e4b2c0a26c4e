//! The `host` interface a strategy imports: log, clock, position, account.

use std::sync::Arc;

use rust_decimal::Decimal;

use super::bindings::{host, types};
use super::convert::{decimal_to_wit, truncate_utf8};
use super::sandbox::{Clock, LogBudget};
use crate::strategy::Account;

/// Longest `log` message kept; the rest is cut.
const MAX_LOG_MESSAGE: usize = 4096;

/// Host-side state a strategy can query, owned by its store.
pub struct HostState {
    pub(super) strategy: Arc<str>,
    pub(super) clock: Clock,
    /// Positions as of the start of the current call, set by the engine;
    /// a strategy trades few symbols, so a list beats hashing.
    pub(super) positions: Vec<(Arc<str>, Decimal)>,
    /// Cash and equity as of the start of the current call.
    pub(super) account: Account,
    pub(super) output: Option<Arc<LogBudget>>,
}

impl HostState {
    pub(super) fn new(strategy: Arc<str>, clock: Clock) -> Self {
        Self { strategy, clock, positions: Vec::new(), account: Account::default(), output: None }
    }

    pub(super) fn set_position(&mut self, symbol: &Arc<str>, qty: Decimal) {
        match self.positions.iter_mut().find(|(s, _)| Arc::ptr_eq(s, symbol) || **s == **symbol) {
            Some((_, held)) => *held = qty,
            None => self.positions.push((symbol.clone(), qty)),
        }
    }

    /// `value` in the contract's decimal; a value that does not fit is
    /// logged and read as zero, since the query cannot fail.
    fn decimal(&self, what: &str, value: Decimal) -> types::Decimal {
        decimal_to_wit(value).unwrap_or_else(|_| {
            tracing::error!(strategy = %self.strategy, what, %value, "does not fit the contract's decimal");
            types::Decimal { mantissa: 0, scale: 0 }
        })
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: types::Level, mut message: String) {
        truncate_utf8(&mut message, MAX_LOG_MESSAGE);
        if let Some(output) = &self.output
            && !output.spend(message.len())
        {
            return;
        }
        let strategy = &*self.strategy;
        match level {
            types::Level::Debug => tracing::debug!(strategy, "{message}"),
            types::Level::Info => tracing::info!(strategy, "{message}"),
            types::Level::Warning => tracing::warn!(strategy, "{message}"),
            types::Level::Error | types::Level::Critical => tracing::error!(strategy, "{message}"),
        }
    }

    fn now(&mut self) -> types::Timestamp {
        self.clock.now()
    }

    fn position(&mut self, symbol: String) -> types::Decimal {
        let qty = self.positions.iter().find(|(s, _)| **s == *symbol).map_or(Decimal::ZERO, |(_, q)| *q);
        self.decimal("position", qty)
    }

    fn account(&mut self) -> types::AccountView {
        types::AccountView {
            cash: self.decimal("cash", self.account.cash),
            equity: self.decimal("equity", self.account.equity),
        }
    }
}
