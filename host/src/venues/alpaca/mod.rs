//! Alpaca: stock bars (`data.alpaca.markets`, polled and streamed) and the
//! trading API (`paper-api.alpaca.markets` or `api.alpaca.markets`, with
//! its trade updates stream). One key pair signs all of it.

/// Market data, REST.
pub const DATA_URL: &str = "https://data.alpaca.markets";
/// Paper trading, REST (its trade updates are at `/stream` on the same host).
pub const TRADING_URL: &str = "https://paper-api.alpaca.markets";
/// The market data stream, before `/v2/{iex|sip}`.
pub const DATA_STREAM_URL: &str = "wss://stream.data.alpaca.markets";

mod bar_stream;
mod bars;
mod orders;
mod trade_stream;
pub(crate) mod plan;

pub use self::bar_stream::AlpacaBarStream;
pub use self::bars::{AlpacaBars, AlpacaBarsConfig, AlpacaCredentials, parse_page, query_time};
pub use self::orders::{AlpacaBroker, round_for_alpaca};
pub use self::trade_stream::AlpacaTradeStream;
