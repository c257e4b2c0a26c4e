//! Kalshi: market candlesticks (polled, and built from the streamed
//! trades) and orders on event contracts (with their fills streamed),
//! signed with RSA-PSS.

/// REST (its WebSocket API is at `/trade-api/ws/v2` on the same host).
pub const REST_URL: &str = "https://api.elections.kalshi.com";

mod candles;
mod fill_stream;
mod orders;
mod socket;
mod trade_stream;
pub(crate) mod plan;

pub use self::candles::{KalshiCandles, KalshiCandlesConfig, KalshiMarket, parse_candles};
pub use self::fill_stream::KalshiFillStream;
pub use self::orders::{KalshiBroker, KalshiCredentials};
pub use self::trade_stream::KalshiTradeStream;
