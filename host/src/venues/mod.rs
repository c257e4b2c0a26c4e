//! The venues, one folder each: a venue's market data, its orders, its
//! streams and its wire vocabulary (error bodies, statuses, signing) live
//! together. What they share lives outside: HTTP and the one mapping of
//! failures in [`crate::venue`], WebSockets in [`crate::stream`], polling
//! in [`crate::feed`], routing and reconciliation in [`crate::router`] and
//! [`crate::reconcile`]. Each venue implements the capabilities
//! ([`crate::feed::BarSource`], [`crate::broker::Broker`],
//! [`crate::stream::Protocol`]); the rest of the host sees only those.

/// Every venue's name, as its config kind, store rows and metrics say it.
pub const NAMES: [&str; 4] = ["alpaca", "binance", "kalshi", "ibkr"];

pub mod alpaca;
pub mod binance;
pub mod ibkr;
pub mod kalshi;
