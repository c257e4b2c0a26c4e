//! `[runtime]`: restarts, hot swaps and compilation limits of the sandbox.

use std::time::Duration;

use serde::Deserialize;

use crate::runtime::{Budget, CompileLimits, Compiler, RuntimeConfig};

/// Sandbox limits; see [`RuntimeConfig`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    pub max_restarts: u32,
    /// The window `max_restarts` counts faults in, in seconds.
    pub fault_window_secs: u64,
    pub restart_backoff_ms: u64,
    /// How often plugin files are checked for a new build to hot-swap, in
    /// ms; 0 turns hot swap off.
    pub watch_ms: u64,
    /// Wall time one plugin's compilation may take, in its own process.
    pub compile_timeout_ms: u64,
    /// Address space the compiling process may use, in MiB.
    pub compile_memory_mib: u64,
    /// What happens to a quarantined strategy's open orders.
    pub on_failure: FailurePolicy,
    /// What a paused strategy's bars do.
    pub paused_bars: PausedBars,
    /// Inputs a swapped-in build must handle without a fault before the
    /// build it replaced is let go; 0 turns rollback off.
    pub probation_inputs: u32,
    /// Instances that may exist at once, counting the builds a probation
    /// keeps and restarts in flight (sizes the pooling allocator).
    pub max_instances: u32,
    /// Where compiled plugins are kept; by default `compiled/` beside the
    /// store when the host keeps one, and nowhere otherwise. `""` turns it off.
    pub compile_cache: Option<String>,
}

/// How the host runs every strategy instance, from `[runtime]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstancePolicy {
    pub on_failure: FailurePolicy,
    pub paused_bars: PausedBars,
    pub probation_inputs: u32,
}

/// What happens to the bars of a strategy an operator has paused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PausedBars {
    /// They play past it: its orders fill and its book follows the market,
    /// but it never sees them (the default).
    #[default]
    Skip,
    /// The instance is frozen: its bars wait, in order, with its other
    /// inputs, and it sees every one on resume (up to 10,000 batches; past
    /// that the oldest are dropped and counted).
    Queue,
}

/// What happens to the open orders of a strategy that is quarantined
/// (marked failed) or removed: they must not trade on without it, unless
/// asked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailurePolicy {
    /// Cancel them (the default).
    #[default]
    Cancel,
    /// Leave them working at the venue.
    Leave,
    /// Cancel them, then close the strategy's positions with market
    /// orders placed from outside it (as a webhook order is).
    Flatten,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        let d = RuntimeConfig::default();
        Self {
            max_restarts: d.max_restarts,
            fault_window_secs: d.fault_window.as_secs(),
            restart_backoff_ms: d.restart_backoff.as_millis() as u64,
            watch_ms: 1000,
            compile_timeout_ms: CompileLimits::default().wall.as_millis() as u64,
            compile_memory_mib: CompileLimits::default().memory >> 20,
            on_failure: FailurePolicy::default(),
            paused_bars: PausedBars::default(),
            probation_inputs: crate::engine::PROBATION_INPUTS,
            max_instances: RuntimeConfig::default().max_instances,
            compile_cache: None,
        }
    }
}

impl RuntimeSection {
    pub fn instance_policy(&self) -> InstancePolicy {
        InstancePolicy {
            on_failure: self.on_failure,
            paused_bars: self.paused_bars,
            probation_inputs: self.probation_inputs,
        }
    }

    /// The runtime, with `budget` as every instance's default.
    pub fn to_runtime(&self, budget: Budget) -> RuntimeConfig {
        RuntimeConfig {
            budget,
            max_instances: self.max_instances.clamp(1, 10_000),
            max_restarts: self.max_restarts,
            fault_window: Duration::from_secs(self.fault_window_secs),
            restart_backoff: Duration::from_millis(self.restart_backoff_ms),
            compiler: Compiler::for_this_process(CompileLimits {
                wall: Duration::from_millis(self.compile_timeout_ms.max(1)),
                memory: self.compile_memory_mib.clamp(64, 1 << 20) << 20,
            }),
            ..RuntimeConfig::default()
        }
    }
}
