//! What the host and each strategy instance report: the body of `/health`
//! and of the control API's instance list.

use serde::Serialize;

use super::latency::LatencySummary;
use crate::control::InstanceState;
use crate::strategy::Breaches;
pub use crate::tally::LastError;

/// What `/health` reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostStatus {
    /// `ok` while every strategy runs, `degraded` once one has failed.
    pub status: String,
    pub feed_done: bool,
    /// Journal lines dropped because the queue to the store was full.
    pub journal_dropped: u64,
    pub strategies: Vec<StrategyStatus>,
    /// Each live venue's trading state: `active`, `reducing` or `halted`,
    /// with the reason and since when.
    pub venues: Vec<crate::risk::VenueTrading>,
    /// Webhook intake per route, deliveries per sink, each feed's and each
    /// venue's sync with their last errors (filled in as `/health` is read).
    #[serde(flatten)]
    pub edges: crate::tally::Edges,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StrategyStatus {
    pub name: String,
    pub state: InstanceState,
    /// The running plugin's name and version, as it describes itself.
    pub plugin: Option<PluginName>,
    /// SHA-256 of the plugin build running now.
    pub sha256: String,
    /// Hot swaps so far.
    pub swaps: u32,
    pub restarts: u32,
    pub bars: u64,
    pub orders: u64,
    pub fills: u64,
    /// Bars the feed could not hand over because the strategy's queue was
    /// full: it fell behind, alone.
    pub bars_dropped: u64,
    /// How often it broke each of its limits.
    pub breaches: Breaches,
    /// From the feed's hand-over of a batch to the engine's finishing it.
    pub latency: LatencySummary,
    /// The instance's own book: its positions (symbol → quantity, as
    /// decimal text) and PnL.
    pub positions: std::collections::BTreeMap<String, String>,
    pub realized_pnl: String,
    pub unrealized_pnl: String,
    /// Why it is not running, while it is not (or the note of a rollback).
    pub error: Option<String>,
    /// The latest error it had, kept after it recovered.
    pub last_error: Option<LastError>,
    /// The feed's symbols it hears; `None` (null) for all of them.
    pub symbols: Option<Vec<String>>,
    /// On the paper broker: its working orders and latest fills.
    #[serde(skip)]
    pub paper: Option<super::SharedLedger>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginName {
    pub name: String,
    pub version: String,
}

impl HostStatus {
    /// Replaces the entry of `status.name`, adding it if new.
    pub fn set(&mut self, status: StrategyStatus) {
        match self.strategies.iter_mut().find(|s| s.name == status.name) {
            Some(slot) => *slot = status,
            None => self.strategies.push(status),
        }
        let failed = self.strategies.iter().any(|s| s.state == InstanceState::Failed);
        self.status = if failed { "degraded" } else { "ok" }.into();
    }
}
