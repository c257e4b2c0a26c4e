//! Interactive Brokers, through the Client Portal Web API that IBKR's
//! gateway serves on the user's own machine (by default
//! `https://localhost:5000/v1/api`, with a self-signed certificate).
//!
//! The gateway holds the brokerage session: a person logs in through it in
//! a browser, and the host keeps that session alive (`/tickle`) and halts
//! the venue while it is lost (see `gateway`). Symbols are resolved to
//! IBKR's contract ids once and kept in the store (`contracts`); bars are
//! polled from `/iserver/marketdata/history` (`history`); orders carry the
//! host's client order id as `cOID` and the gateway's confirmation
//! questions are answered by a configured policy (`orders`).

/// Where the gateway listens once started with its default configuration.
pub const GATEWAY_URL: &str = "https://localhost:5000/v1/api";

mod config;
mod contracts;
mod gateway;
mod history;
mod orders;
mod wire;
pub(crate) mod plan;

pub use self::config::IbkrConfig;
pub use self::gateway::{GatewaySetupError, IbkrGateway};
pub use self::history::IbkrHistory;
pub use self::orders::IbkrBroker;
