//! stratbox: a host for sandboxed WebAssembly trading strategies.
//!
//! The host does all I/O. Strategies are WebAssembly components behind the
//! `stratbox:strategy` WIT contract; they see bars, fills and signals and
//! answer with proposed actions, which pass the host's [`risk`] checks before
//! any [`broker`] sees them.

pub mod api;
pub mod bar;
pub mod bench;
pub mod broker;
pub mod check;
pub mod cli;
pub mod client;
pub mod config;
pub mod control;
pub mod engine;
pub mod feed;
pub mod history;
pub mod journal;
pub mod metrics;
pub mod notify;
pub mod order;
pub mod portfolio;
pub mod rate_limit;
pub mod reconcile;
pub mod report;
pub mod risk;
pub mod router;
pub mod runtime;
pub mod scaffold;
pub mod store;
pub mod strategy;
pub mod stream;
pub mod sweep;
pub mod tally;
pub mod tape;
pub mod venue;
pub mod venues;
pub mod webhook;
