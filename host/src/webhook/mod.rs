//! Webhooks: checking deliveries coming in (Standard Webhooks signatures,
//! TradingView alerts) and signing ones going out.

mod standard;
mod tradingview;

pub use self::standard::{Secret, SignatureError, TOLERANCE_SECS, verify};
pub use self::tradingview::{Alert, AlertError, AlertOrder, StrategyFields, constant_time_eq};
