//! Webhooks: checking deliveries coming in (Standard Webhooks signatures,
//! TradingView alerts) and signing ones going out.

mod intake;
mod standard;
mod tradingview;

pub use self::intake::{Inbound, WebhookIntake, standard as standard_route, tradingview as tradingview_route};
pub use self::standard::{Secret, SignatureError, TOLERANCE_SECS, verify};
pub use self::tradingview::{Alert, AlertError, AlertOrder, StrategyFields, constant_time_eq};
