//! Kalshi: market candlesticks (polled) and orders on event contracts (with
//! their fills streamed), signed with RSA-PSS.

mod candles;
mod fill_stream;
mod orders;

pub use self::candles::{KalshiCandles, KalshiCandlesConfig, KalshiMarket, parse_candles};
pub use self::fill_stream::KalshiFillStream;
pub use self::orders::{KalshiBroker, KalshiCredentials};
