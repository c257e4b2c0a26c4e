//! Webhooks: checking deliveries coming in (Standard Webhooks signatures,
//! TradingView alerts, JSON orders), keeping them in the store until a
//! strategy has them, and signing ones going out.

mod inbox;
mod intake;
mod limit;
mod order;
mod route;
mod standard;
mod tradingview;

pub use self::inbox::{DecodeCause, DecodeError, Handed, Inbound, run_dispatcher};
pub use self::intake::{
    EnvLookup, INBOX_CAPACITY, WebhookError, WebhookIntake, standard as standard_route,
    tradingview as tradingview_route,
};
pub use self::order::parse_order;
pub use self::route::{WebhookAction, WebhookConfig, WebhookKind};
pub use self::standard::{Secret, SignatureError, TOLERANCE_SECS, verify};
pub use self::tradingview::{Alert, AlertError, AlertOrder, StrategyFields, constant_time_eq};
