//! Kalshi: market candlesticks (polled) and orders on event contracts,
//! signed with RSA-PSS.

mod candles;
mod orders;

pub use self::candles::{KalshiCandles, KalshiCandlesConfig, KalshiMarket, parse_candles};
pub use self::orders::{KalshiBroker, KalshiCredentials};
