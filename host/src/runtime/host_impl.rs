//! The `host` interface a strategy imports: log, clock, position, params.

use std::collections::HashMap;
use std::sync::Arc;

use rust_decimal::Decimal;

use super::bindings::{host, types};
use super::convert::{decimal_to_wit, truncate_utf8};
use super::sandbox::{Clock, LogBudget};

/// Longest `log` message kept; the rest is cut.
const MAX_LOG_MESSAGE: usize = 4096;

/// Host-side state a strategy can query, owned by its store.
pub struct HostState {
    pub(super) strategy: Arc<str>,
    pub(super) clock: Clock,
    /// Positions as of the start of the current call, set by the engine.
    pub(super) positions: HashMap<Arc<str>, Decimal>,
    /// Given parameters, then defaults for the rest.
    pub(super) params: HashMap<String, String>,
    pub(super) output: Option<Arc<LogBudget>>,
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: host::LogLevel, mut message: String) {
        truncate_utf8(&mut message, MAX_LOG_MESSAGE);
        if let Some(output) = &self.output
            && !output.spend(message.len())
        {
            return;
        }
        let strategy = &*self.strategy;
        match level {
            host::LogLevel::Trace => tracing::trace!(strategy, "{message}"),
            host::LogLevel::Debug => tracing::debug!(strategy, "{message}"),
            host::LogLevel::Info => tracing::info!(strategy, "{message}"),
            host::LogLevel::Warn => tracing::warn!(strategy, "{message}"),
            host::LogLevel::Error => tracing::error!(strategy, "{message}"),
        }
    }

    fn now(&mut self) -> types::Timestamp {
        self.clock.now()
    }

    fn position(&mut self, symbol: String) -> types::Decimal {
        let qty = self.positions.get(symbol.as_str()).copied().unwrap_or_default();
        decimal_to_wit(qty).unwrap_or_else(|_| {
            tracing::error!(strategy = %self.strategy, %symbol, %qty, "position does not fit the contract's decimal");
            types::Decimal { mantissa: 0, scale: 0 }
        })
    }

    fn param(&mut self, key: String) -> Option<String> {
        self.params.get(&key).cloned()
    }
}
