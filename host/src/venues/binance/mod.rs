//! Binance spot: klines (polled and streamed) and orders (with their
//! execution reports streamed), signed with HMAC-SHA256, with each symbol's
//! trading filters checked before an order is sent.

/// Spot REST.
pub const REST_URL: &str = "https://api.binance.com";
/// Market data streams.
pub const STREAM_URL: &str = "wss://stream.binance.com:9443";
/// The WebSocket API (the user data stream).
pub const WS_API_URL: &str = "wss://ws-api.binance.com:443/ws-api/v3";

mod filters;
mod kline_stream;
mod klines;
mod orders;
mod user_stream;
pub(crate) mod plan;

pub use self::kline_stream::BinanceKlineStream;
pub use self::klines::{BinanceKlines, BinanceKlinesConfig, parse_klines};
pub use self::orders::{
    BinanceBroker, BinanceCredentials, FILTER_TTL, LotRule, NotionalRule, SymbolFilters, VenueClock, sign,
};
pub use self::user_stream::BinanceUserStream;
