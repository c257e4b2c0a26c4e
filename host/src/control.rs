//! What an operator may ask of one running strategy instance, and why a
//! request may be refused. The API sends these; each engine obeys them
//! between inputs.

use crate::config::FailurePolicy;

/// A request to one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Stop calling the strategy: bars play past it (its orders still
    /// fill), and fills, signals and webhook orders wait for it.
    Pause,
    /// Undo a pause; for a quarantined instance, release it: restart it
    /// from its last saved state with its fault count cleared.
    Resume,
    /// Stop the instance for good: its open orders and positions follow
    /// `on_remove`; orders still working (left, or closing a position) are
    /// followed until none is open, then its engine ends.
    Remove { on_remove: FailurePolicy },
}

/// What an instance is doing, as the operator sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    #[default]
    Running,
    /// Running, but losing bars its queue had no room for.
    Lagging,
    Paused,
    /// Quarantined: no more calls until released or swapped.
    Failed,
    Stopped,
    /// Removed by an operator.
    Removed,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("no instance named `{name}`")]
    NoSuchInstance { name: String },
    #[error("no venue named `{venue}`")]
    NoSuchVenue { venue: String },
    #[error("{message}")]
    Conflict { message: String },
    #[error("the instance has stopped")]
    Stopped,
    #[error("the build is {size} bytes, over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    /// An uploaded build that is not a valid strategy for the instance.
    #[error("{message}")]
    Invalid { message: String },
}
