//! Market data: where bars come from.

mod csv;
mod merge;
mod parquet;
mod poll;
mod replay;
mod timestamp;

pub use self::csv::{CsvLimits, is_parquet, load_bars, load_csv, parse_csv, parse_csv_as, stream_bars};
pub use self::merge::{Chunks, MergedStream, merge};
pub use self::poll::{BarSource, PollSchedule, PolledFeed};
pub use self::replay::ReplayFeed;
pub use self::timestamp::{TimeSpec, TimeSpecError, parse_instant};
pub use crate::venues::alpaca::{AlpacaBarStream, AlpacaBars, AlpacaBarsConfig, AlpacaCredentials};
pub use crate::venues::binance::{BinanceKlineStream, BinanceKlines, BinanceKlinesConfig};
pub use crate::venues::kalshi::{KalshiCandles, KalshiCandlesConfig, KalshiMarket};

/// Parsers of venue answers, exposed for fixture tests.
pub mod wire {
    pub use crate::venues::alpaca::parse_page as alpaca_bars;
    pub use crate::venues::binance::parse_klines as binance_klines;
    pub use crate::venues::kalshi::parse_candles as kalshi_candles;
}

use crate::bar::Bar;

/// Why market data could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("cannot read {path}")]
    Io { path: String, source: std::io::Error },
    #[error("{path} is empty: expected a header (a time column, open, high, low, close, volume) and at least one row")]
    Empty { path: String },
    #[error("{path} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { path: String, size: u64, limit: u64 },
    #[error("{path}: header lacks column `{column}` (found: {found})")]
    Header { path: String, column: &'static str, found: String },
    #[error("{path}, line {line}: {message}")]
    Row { path: String, line: u64, message: String },
    /// A bad value in a columnar file, which has rows but no lines.
    #[error("{path}, row {row}: {message}")]
    Record { path: String, row: u64, message: String },
    #[error(transparent)]
    Venue(#[from] crate::venue::VenueError),
    #[error("invalid feed settings: {message}")]
    Config { message: String },
    #[error(transparent)]
    Time(#[from] TimeSpecError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// A source of bars for the live engine, polled until it is exhausted.
#[async_trait::async_trait]
pub trait MarketData: Send {
    /// The next bars that closed, in time order; `None` once the feed ends.
    /// Asking for the next batch acknowledges the previous one.
    async fn next_batch(&mut self) -> Result<Option<Vec<Bar>>, FeedError>;

    /// Acknowledges the last batch without asking for another, e.g. before
    /// a clean shutdown. An unacknowledged batch is delivered again.
    async fn ack(&mut self) -> Result<(), FeedError> {
        Ok(())
    }

    /// Delivers again every bar after `time`, even those acknowledged
    /// before: a strategy may not have committed them. Feeds without
    /// cursors have nothing to do.
    fn rewind_to(&mut self, _time: crate::bar::Millis) -> Result<(), FeedError> {
        Ok(())
    }
}

/// Daily bars shipped in the binary (public domain; see `data/README.md`).
pub const BUNDLED_DATA: &[(&str, &str)] = &[
    ("AAPL", include_str!("../../../data/AAPL.csv")),
    ("GOOG", include_str!("../../../data/GOOG.csv")),
    ("IBM", include_str!("../../../data/IBM.csv")),
    ("MSFT", include_str!("../../../data/MSFT.csv")),
];

/// Loads `bundled:SYMBOL` from [`BUNDLED_DATA`] or a CSV path, as `symbol`.
pub fn load_source(source: &str, symbol: &str, limits: CsvLimits, time: &TimeSpec) -> Result<Vec<Bar>, FeedError> {
    match source.strip_prefix("bundled:") {
        Some(name) => {
            let (_, text) =
                BUNDLED_DATA.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).ok_or_else(|| FeedError::Io {
                    path: source.to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no such bundled data set (bundled: AAPL, GOOG, IBM, MSFT)",
                    ),
                })?;
            parse_csv(text.as_bytes(), source, symbol)
        }
        None => load_bars(std::path::Path::new(source), symbol, limits, time),
    }
}
